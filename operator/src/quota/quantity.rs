//! Kubernetes resource quantities ("500m", "1.5", "512Mi", "1e3") as exact integers of
//! thousandths (milli-units), rounded in the direction the caller asks for, and back to text.

/// An amount in thousandths of the resource's unit: millicores for cpu, millibytes for memory,
/// thousandths of a pod for `pods`. `i128` holds exbibytes in millibytes with room to spare.
pub type Milli = i128;

/// One whole unit in milli-units.
pub const ONE: Milli = 1000;

/// Which way to round a quantity that is finer than a milli-unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    /// Towards +infinity: for amounts that are asked for (requests), so they are never
    /// underestimated.
    Up,
    /// Towards -infinity: for amounts that are granted (hard limits), so they are never
    /// overestimated.
    Down,
}

/// Parses a Kubernetes quantity into milli-units; `None` when it is not a valid quantity or does
/// not fit.
pub fn parse(text: &str, round: Round) -> Option<Milli> {
    let text = text.trim();
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let number_len = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, suffix) = body.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    // The mantissa as an integer and the count of its fractional digits.
    let mut mantissa: i128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa.checked_mul(10)?.checked_add(i128::from(digit - b'0'))?;
    }
    let (binary_power, decimal_exponent) = suffix_scale(suffix)?;
    // value = mantissa * 1024^binary_power * 10^decimal_exponent / 10^fraction_digits, in
    // milli-units: one more factor 10^3.
    let mut numerator = mantissa.checked_mul(1024i128.checked_pow(binary_power)?)?;
    let exponent = decimal_exponent.checked_add(3)?.checked_sub(i32::try_from(fraction.len()).ok()?)?;
    let mut denominator: i128 = 1;
    if exponent >= 0 {
        numerator = numerator.checked_mul(10i128.checked_pow(u32::try_from(exponent).ok()?)?)?;
    } else {
        denominator = 10i128.checked_pow(u32::try_from(-exponent).ok()?)?;
    }
    let value = if negative { -numerator } else { numerator };
    Some(match round {
        Round::Up => value.div_euclid(denominator) + i128::from(value.rem_euclid(denominator) != 0),
        Round::Down => value.div_euclid(denominator),
    })
}

/// (power of 1024, power of 10) of a quantity suffix.
fn suffix_scale(suffix: &str) -> Option<(u32, i32)> {
    Some(match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (1, 0),
        "Mi" => (2, 0),
        "Gi" => (3, 0),
        "Ti" => (4, 0),
        "Pi" => (5, 0),
        "Ei" => (6, 0),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            if exponent.is_empty() || exponent.len() > 3 {
                return None;
            }
            (0, exponent.parse::<i32>().ok()?)
        }
    })
}

/// Formats milli-units of the quota resource `key` as a valid quantity: byte-valued resources
/// (memory, storage, hugepages) in the largest exact binary unit ("512Mi"), the rest in whole
/// units with up to three decimals ("0.5", "16") so that a message reads "cpu 15.5/16".
pub fn format(key: &str, value: Milli) -> String {
    let bytes_like = ["memory", "storage", "hugepages"].iter().any(|k| key.contains(k));
    if bytes_like && value % ONE == 0 {
        let bytes = value / ONE;
        for (suffix, size) in [("Ti", 1i128 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
            if bytes != 0 && bytes % size == 0 {
                return format!("{}{suffix}", bytes / size);
            }
        }
        return bytes.to_string();
    }
    let sign = if value < 0 { "-" } else { "" };
    let magnitude = value.unsigned_abs();
    let whole = magnitude / 1000;
    let thousandths = magnitude % 1000;
    if thousandths == 0 {
        format!("{sign}{whole}")
    } else {
        let digits = format!("{thousandths:03}");
        format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(text: &str) -> Milli {
        parse(text, Round::Up).unwrap_or_else(|| panic!("{text} parses"))
    }

    #[test]
    fn decimal_binary_and_exponent_forms() {
        assert_eq!(up("1"), 1000);
        assert_eq!(up("500m"), 500);
        assert_eq!(up("1.5"), 1500);
        assert_eq!(up(".5"), 500);
        assert_eq!(up("2k"), 2_000_000);
        assert_eq!(up("1Ki"), 1024 * 1000);
        assert_eq!(up("512Mi"), 512 * 1024 * 1024 * 1000);
        assert_eq!(up("1e3"), 1_000_000);
        assert_eq!(up("1E3"), 1_000_000);
        assert_eq!(up("-1"), -1000);
        assert_eq!(up("8Ei"), 8 * (1i128 << 60) * 1000);
    }

    #[test]
    fn sub_milli_amounts_round_the_way_asked() {
        assert_eq!(parse("1n", Round::Up), Some(1));
        assert_eq!(parse("1n", Round::Down), Some(0));
        assert_eq!(parse("1500u", Round::Up), Some(2));
        assert_eq!(parse("1500u", Round::Down), Some(1));
        assert_eq!(parse("-1n", Round::Down), Some(-1));
    }

    #[test]
    fn invalid_quantities_are_none() {
        for text in ["", "m", "abc", "1.2.3", "1x", "1e", "1e99999", "1Zi", "99999999999999999999999999999999999999999"]
        {
            assert_eq!(parse(text, Round::Up), None, "{text:?}");
        }
    }

    #[test]
    fn formatting_reads_naturally_and_parses_back() {
        assert_eq!(format("requests.cpu", 15_500), "15.5");
        assert_eq!(format("requests.cpu", 16_000), "16");
        assert_eq!(format("requests.cpu", 250), "0.25");
        assert_eq!(format("requests.cpu", -500), "-0.5");
        assert_eq!(format("requests.memory", 512 * 1024 * 1024 * 1000), "512Mi");
        assert_eq!(format("limits.memory", 3 * (1i128 << 30) * 1000), "3Gi");
        assert_eq!(format("requests.memory", 1000 * 1000), "1000");
        assert_eq!(format("pods", 3000), "3");
        for (key, value) in [("requests.cpu", 1234), ("requests.memory", 5 * (1 << 20) * 1000), ("pods", 1000)] {
            assert_eq!(parse(&format(key, value), Round::Up), Some(value));
        }
    }
}
