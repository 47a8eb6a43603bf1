//! Shortening text for bounded fields (condition messages, Event notes). Pure.

/// At most `max` bytes of `text`, cut on a character boundary.
pub fn clip(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// At most `max` bytes of `text`; when it is cut, it ends in `…` (3 bytes) within `max`.
pub fn clip_marked(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    format!("{}…", clip(text, max.saturating_sub(3)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_on_character_boundaries_within_the_limit() {
        assert_eq!(clip("abcdef", 4), "abcd");
        assert_eq!(clip("abc", 10), "abc");
        assert_eq!(clip("aé", 2), "a", "é is two bytes");
        for max in 0..12 {
            assert!(clip_marked("añbñcñdñ", max).len() <= max.max(3), "{max}");
        }
    }

    #[test]
    fn a_cut_text_is_marked_and_a_short_one_is_not() {
        assert_eq!(clip_marked("abc", 3), "abc");
        assert_eq!(clip_marked("abcdefgh", 6), "abc…");
        assert_eq!(clip_marked("abcdefgh", 6).len(), 6);
    }
}
