//! Durations as users write them in specs ("90m", "1h30m", "36h"), in Go's `time.ParseDuration`
//! syntax so that the CEL `duration()` checks at apply time and the operator agree.
//!
//! Parsed here in exact integer nanoseconds rather than by `kube::core::Duration`, which goes
//! through floating-point seconds and panics on values too large for a `Duration` (such as
//! "99999999999999999999h", which the CRD's pattern allows): one such spec crashed the operator.

use jiff::SignedDuration;

const NANOS_PER_SECOND: i128 = 1_000_000_000;
/// Fractional digits kept per component (Go keeps as many as fit; nanoseconds need nine).
const FRACTION_DIGITS: usize = 18;

/// Parses a non-negative Go-style duration. The error names what is wrong.
pub fn parse(text: &str) -> Result<SignedDuration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("an empty string is not a duration".into());
    }
    let nanos = nanoseconds(trimmed).map_err(|e| format!("{text:?} is not a duration: {e}"))?;
    if nanos < 0 {
        return Err(format!("{text:?} is negative"));
    }
    let secs = i64::try_from(nanos / NANOS_PER_SECOND).map_err(|_| format!("{text:?} is out of range"))?;
    Ok(SignedDuration::new(secs, (nanos % NANOS_PER_SECOND) as i32))
}

/// Go's duration grammar: an optional sign, then `0` or one or more `<number><unit>` with
/// units ns, us (µs), ms, s, m, h; in exact nanoseconds, an error on overflow.
fn nanoseconds(text: &str) -> Result<i128, &'static str> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err("no number");
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let (whole, after) = split_digits(rest);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => split_digits(after),
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err("expected a number");
        }
        let unit_end = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SECOND,
            "m" => 60 * NANOS_PER_SECOND,
            "h" => 3600 * NANOS_PER_SECOND,
            "" => return Err("a number without a unit (ns, us, ms, s, m, h)"),
            _ => return Err("unknown unit (use ns, us, ms, s, m or h)"),
        };
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| "out of range")? };
        let mut value = whole.checked_mul(scale).ok_or("out of range")?;
        let kept = &fraction[..fraction.len().min(FRACTION_DIGITS)];
        if !kept.is_empty() {
            let digits: i128 = kept.parse().map_err(|_| "out of range")?;
            value = value.checked_add(digits * scale / 10i128.pow(kept.len() as u32)).ok_or("out of range")?;
        }
        total = total.checked_add(value).ok_or("out of range")?;
        rest = next;
    }
    Ok(if negative { -total } else { total })
}

/// Splits the leading ASCII digits off `text`.
fn split_digits(text: &str) -> (&str, &str) {
    text.split_at(text.bytes().take_while(u8::is_ascii_digit).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse("1h30m").unwrap(), SignedDuration::from_mins(90));
        assert_eq!(parse("36h").unwrap(), SignedDuration::from_hours(36));
        assert_eq!(parse("1500ms").unwrap(), SignedDuration::from_millis(1500));
        assert_eq!(parse("1.5h").unwrap(), SignedDuration::from_mins(90));
        assert_eq!(parse(".5s").unwrap(), SignedDuration::from_millis(500));
        assert_eq!(parse("1µs").unwrap(), SignedDuration::from_micros(1));
        assert_eq!(parse("0").unwrap(), SignedDuration::ZERO);
        assert_eq!(parse("+2m").unwrap(), SignedDuration::from_mins(2));
    }

    #[test]
    fn rejects_garbage_and_negative() {
        assert!(parse("2 days").is_err());
        assert!(parse("-5m").is_err());
        assert!(parse("").is_err());
        assert!(parse("5").is_err());
        assert!(parse("1d").is_err());
        assert!(parse("h").is_err());
        assert!(parse(".h").is_err());
    }

    /// The spec of `e2e/testdata/invalid/pipeline-partition-offset-overflow.yaml`, which crashed
    /// the operator through a float conversion: now an error naming the value.
    #[test]
    fn values_too_large_are_errors_not_panics() {
        for text in [
            "99999999999999999999h",
            "9223372036854775808s",
            "1e400h",
            &"9".repeat(200),
            "170141183460469231731687303715884105727ns1ns",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
        let message = parse("99999999999999999999h").unwrap_err();
        assert!(message.contains("out of range"), "{message}");
    }
}
