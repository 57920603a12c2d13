//! Interval strings such as `30D` or `1M2W`, as accepted by `delete_older_than`.
//!
//! The grammar is bakthat 0.6's (`utils._interval_string_to_seconds`): one or more `<number><unit>` pairs, summed.
//! Units are case-sensitive: `s` second, `m` minute, `h` hour, `D` day, `W` week (7 days), `M` month (30 days) and
//! `Y` year (365 days). Every number must be greater than zero; leading zeros are fine (`007m`), repeats add up
//! (`1h1h`), and whitespace, signs and decimals are refused.
//!
//! The one deliberate difference: 0.6 parsed the empty string as 0 seconds, which made `delete_older_than` delete
//! every backup. Here it is an error ([`IntervalError::Empty`]).
//!
//! [`parse_expiry`] reads the validity of a presigned URL with the same grammar, plus lower-case `d` and `w` and bare
//! seconds (`7d`, `90`), capped at the 7 days SigV4 allows.
//!
//! This module only parses. It knows nothing about clocks or backups: callers subtract the result from their "now".

use thiserror::Error;

/// Why an interval string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IntervalError {
    /// The string was empty; 0.6 read that as "0 seconds", i.e. delete everything.
    #[error("an empty interval would delete every backup; give one such as 30D or 1M2W")]
    Empty,
    /// The string does not follow the grammar (or its total does not fit in an `i64`). Holds the string as given.
    #[error("bad interval format for {0}: use numbers with units s, m, h, D, W, M, Y such as 2D1h")]
    Bad(String),
    /// An expiry longer than a presigned URL may last. Holds the string as given.
    #[error("{0} is longer than 7 days, the most a presigned URL can last; give 7D or less")]
    TooLong(String),
}

/// The longest expiry [`parse_expiry`] accepts: 7 days, the SigV4 limit for presigned URLs.
pub const MAX_EXPIRY_SECS: i64 = 7 * 86_400;

/// Parses the validity of a presigned URL: the interval grammar (`1h`, `30m`, `7D`, `1D12h`), lower-case `d` and
/// `w` for days and weeks, or bare seconds (`3600`). At most [`MAX_EXPIRY_SECS`].
pub fn parse_expiry(s: &str) -> Result<std::time::Duration, IntervalError> {
    let secs = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| IntervalError::Bad(s.to_string()))?
    } else {
        let canonical: String =
            s.chars().map(|c| if c == 'd' || c == 'w' { c.to_ascii_uppercase() } else { c }).collect();
        parse_interval(&canonical).map_err(|e| match e {
            IntervalError::Bad(_) => IntervalError::Bad(s.to_string()),
            other => other,
        })?
    };
    if secs > MAX_EXPIRY_SECS {
        return Err(IntervalError::TooLong(s.to_string()));
    }
    Ok(std::time::Duration::from_secs(secs as u64))
}

/// Seconds in one of the given unit, or `None` if the byte is not a unit letter.
fn unit_seconds(unit: u8) -> Option<i64> {
    match unit {
        b's' => Some(1),
        b'm' => Some(60),
        b'h' => Some(3_600),
        b'D' => Some(86_400),
        b'W' => Some(7 * 86_400),
        b'M' => Some(30 * 86_400),
        b'Y' => Some(365 * 86_400),
        _ => None,
    }
}

/// Parses an interval string such as `2D1h` into a number of seconds (here 176400).
///
/// See the module documentation for the grammar. The result is always greater than zero.
pub fn parse_interval(s: &str) -> Result<i64, IntervalError> {
    if s.is_empty() {
        return Err(IntervalError::Empty);
    }
    let bad = || IntervalError::Bad(s.to_string());
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    while i < bytes.len() {
        let digits_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits_start || i == bytes.len() {
            return Err(bad());
        }
        // Only ASCII digits were consumed, so the slice is valid UTF-8 and only overflow can fail here.
        let number: i64 = s[digits_start..i].parse().map_err(|_| bad())?;
        if number == 0 {
            return Err(bad());
        }
        let unit = unit_seconds(bytes[i]).ok_or_else(bad)?;
        i += 1;
        total = number.checked_mul(unit).and_then(|secs| total.checked_add(secs)).ok_or_else(bad)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries() {
        let secs = |s| parse_expiry(s).map(|d| d.as_secs());
        assert_eq!(secs("1h"), Ok(3600));
        assert_eq!(secs("30m"), Ok(1800));
        assert_eq!(secs("7D"), Ok(604_800));
        assert_eq!(secs("7d"), Ok(604_800));
        assert_eq!(secs("1w"), Ok(604_800));
        assert_eq!(secs("1D12h"), Ok(129_600));
        assert_eq!(secs("90"), Ok(90));
        assert_eq!(secs("8D"), Err(IntervalError::TooLong("8D".into())));
        assert_eq!(secs("1M"), Err(IntervalError::TooLong("1M".into())));
        assert_eq!(secs("0"), Err(IntervalError::Bad("0".into())));
        assert_eq!(secs("1x"), Err(IntervalError::Bad("1x".into())));
        assert_eq!(secs(""), Err(IntervalError::Empty));
    }

    #[test]
    fn valid_intervals() {
        let cases: &[(&str, i64)] = &[
            // Every example in §8 of the 0.6 spec.
            ("2D1h", 176_400),
            ("1M3W4h2s", 4_420_802),
            ("3M2D8h20m5s", 7_978_805),
            ("1h1h", 7_200),
            ("007m", 420),
            // Each unit alone.
            ("1s", 1),
            ("1m", 60),
            ("1h", 3_600),
            ("1D", 86_400),
            ("1W", 604_800),
            ("1M", 2_592_000),
            ("1Y", 31_536_000),
            // Other shapes.
            ("30D", 2_592_000),
            ("1M2W", 2_592_000 + 2 * 604_800),
            ("90s", 90),
            ("1s1m1h1D1W1M1Y", 1 + 60 + 3_600 + 86_400 + 604_800 + 2_592_000 + 31_536_000),
            ("1Y1Y", 2 * 31_536_000),
            ("0001s", 1),
            ("9223372036854775807s", i64::MAX),
        ];
        for &(input, want) in cases {
            assert_eq!(parse_interval(input), Ok(want), "input {input:?}");
        }
    }

    #[test]
    fn empty_is_refused() {
        assert_eq!(parse_interval(""), Err(IntervalError::Empty));
        assert_eq!(
            IntervalError::Empty.to_string(),
            "an empty interval would delete every backup; give one such as 30D or 1M2W"
        );
    }

    #[test]
    fn bad_intervals() {
        let cases = [
            // Zero numbers (§8: `0D`, `1D0h`).
            "0D",
            "1D0h",
            "00s",
            // Case-sensitive units (§8: `1d`).
            "1d",
            "1H",
            "1S",
            "1w",
            "1y",
            // Whitespace.
            " 1D",
            "1D ",
            "1 D",
            "1D 2h",
            "1D\n",
            "\t",
            // Signs.
            "+1D",
            "-1D",
            "1D-1h",
            // Decimals.
            "1.5D",
            "1,5D",
            ".5D",
            // Missing parts.
            "1",
            "D",
            "1D2",
            "DD",
            "1DD",
            // Other units and junk.
            "1x",
            "1ms",
            "1Dé",
            "١D", // an Arabic-Indic digit is not [0-9]
            // Overflow: refused, not wrapped.
            "9223372036854775808s",
            "9223372036854775807s1s",
            "300000000000000000Y",
        ];
        for input in cases {
            assert_eq!(parse_interval(input), Err(IntervalError::Bad(input.to_string())), "input {input:?}");
        }
    }

    #[test]
    fn bad_message_names_the_input_and_the_units() {
        let err = parse_interval("1d").unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad interval format for 1d: use numbers with units s, m, h, D, W, M, Y such as 2D1h"
        );
    }
}
