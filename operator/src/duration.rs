//! Durations as users write them in specs ("90m", "1h30m", "36h"), in Go's `time.ParseDuration`
//! syntax so that the CEL `duration()` checks at apply time and the operator agree.

use std::str::FromStr;

use jiff::SignedDuration;

/// Parses a non-negative Go-style duration. The error names what is wrong.
pub fn parse(text: &str) -> Result<SignedDuration, String> {
    if text.trim().is_empty() {
        return Err("an empty string is not a duration".into());
    }
    let parsed = kube::core::Duration::from_str(text).map_err(|e| format!("{text:?} is not a duration: {e}"))?;
    if parsed.is_negative() {
        return Err(format!("{text:?} is negative"));
    }
    let std: std::time::Duration = parsed.into();
    SignedDuration::try_from(std).map_err(|e| format!("{text:?} is out of range: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse("1h30m").unwrap(), SignedDuration::from_mins(90));
        assert_eq!(parse("36h").unwrap(), SignedDuration::from_hours(36));
        assert_eq!(parse("1500ms").unwrap(), SignedDuration::from_millis(1500));
    }

    #[test]
    fn rejects_garbage_and_negative() {
        assert!(parse("2 days").is_err());
        assert!(parse("-5m").is_err());
        assert!(parse("").is_err());
    }
}
