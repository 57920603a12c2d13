//! How inventory values become file names in the mount, and timestamps in those names.
//!
//! Names that come from the inventory (backup names, tags) are percent-escaped so that any value is one safe path
//! component: `%` becomes `%25`, `/` becomes `%2F`, bytes below 0x20 and 0x7F become `%XX` (upper-case hex), and the
//! names `.` and `..` become `%2E` and `%2E%2E`; an empty name is `%`. Everything else (UTF-8 included) is kept, so
//! ordinary names read as they are. Entries inside an archive are shown with their own names (a tar path component
//! cannot hold `/`).

use chrono::Datelike;

use crate::model::{utc, Epoch};

/// Escapes one inventory value as a path component (see the module docs).
pub fn escape(name: &str) -> Vec<u8> {
    match name {
        "" => return b"%".to_vec(),
        "." => return b"%2E".to_vec(),
        ".." => return b"%2E%2E".to_vec(),
        _ => {}
    }
    let mut out = Vec::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b == b'%' || b == b'/' || b < 0x20 || b == 0x7f {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// Reverses [`escape`] (for documentation and tests; the mount never needs it).
pub fn unescape(name: &[u8]) -> Option<Vec<u8>> {
    if name == b"%" {
        return Some(Vec::new());
    }
    let mut out = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        if name[i] == b'%' {
            let hex = std::str::from_utf8(name.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(name[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The directory name of a backup under `/by-name/<name>/`: its UTC time, e.g. `2026-11-22T040805Z` (sorts by
/// time, has no `:` that file managers and Windows shares dislike).
pub fn timestamp(epoch: Epoch) -> Vec<u8> {
    let t = utc(epoch);
    if !(0..=9999).contains(&t.year()) {
        return t.format("%Y-%m-%dT%H%M%SZ").to_string().into_bytes();
    }
    // Written by hand: listing a directory of ten thousand backups formats ten thousand of these.
    let mut v = Vec::with_capacity(18);
    push_digits(&mut v, t.year() as u32, 4);
    v.push(b'-');
    push_digits(&mut v, t.month(), 2);
    v.push(b'-');
    push_digits(&mut v, t.day(), 2);
    v.push(b'T');
    push_hhmmss(&mut v, epoch);
    v.push(b'Z');
    v
}

fn push_digits(v: &mut Vec<u8>, n: u32, width: u32) {
    for i in (0..width).rev() {
        v.push(b'0' + (n / 10u32.pow(i) % 10) as u8);
    }
}

fn push_hhmmss(v: &mut Vec<u8>, epoch: Epoch) {
    let s = epoch.rem_euclid(86_400) as u32;
    push_digits(v, s / 3600, 2);
    push_digits(v, s / 60 % 60, 2);
    push_digits(v, s % 60, 2);
}

/// The time a [`timestamp`] names (`None` if it is not one).
pub fn parse_timestamp(name: &[u8]) -> Option<Epoch> {
    let s = std::str::from_utf8(name).ok()?;
    let t = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H%M%SZ").ok()?;
    Some(t.and_utc().timestamp())
}

/// Seconds into the day of an `HHMMSS` (`None` if it is not one).
pub fn parse_hhmmss(s: &[u8]) -> Option<i64> {
    if s.len() != 6 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |i: usize| i64::from(s[i] - b'0') * 10 + i64::from(s[i + 1] - b'0');
    let (h, m, sec) = (n(0), n(2), n(4));
    (h < 24 && m < 60 && sec < 60).then_some(h * 3600 + m * 60 + sec)
}

/// The `/by-date/YYYY/MM/DD` components of a backup time.
pub fn date_parts(epoch: Epoch) -> [Vec<u8>; 3] {
    let t = utc(epoch);
    [t.format("%Y").to_string(), t.format("%m").to_string(), t.format("%d").to_string()].map(String::into_bytes)
}

/// `<name>@HHMMSS`, the entry of a backup under `/by-date/YYYY/MM/DD/`.
pub fn date_entry(escaped_name: &[u8], epoch: Epoch) -> Vec<u8> {
    let mut v = escaped_name.to_vec();
    v.push(b'@');
    push_hhmmss(&mut v, epoch);
    v
}

/// `name~2`, `name~3`…: how the second and later of several backups that would get one name are told apart.
pub fn disambiguate(name: &[u8], n: usize) -> Vec<u8> {
    let mut v = name.to_vec();
    v.extend_from_slice(format!("~{n}").as_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_what_cannot_be_a_component() {
        assert_eq!(escape("etc"), b"etc");
        assert_eq!(escape("a/b"), b"a%2Fb");
        assert_eq!(escape("100%"), b"100%25");
        assert_eq!(escape("x\ny\x7f"), b"x%0Ay%7F");
        assert_eq!(escape("."), b"%2E");
        assert_eq!(escape(".."), b"%2E%2E");
        assert_eq!(escape(""), b"%");
        assert_eq!(escape("été"), "été".as_bytes());
        assert_eq!(timestamp(1_795_320_485), b"2026-11-22T040805Z");
        assert_eq!(date_entry(b"etc", 1_795_320_485), b"etc@040805");
        assert_eq!(parse_timestamp(b"2026-11-22T040805Z"), Some(1_795_320_485));
        assert_eq!(parse_timestamp(b"latest"), None);
        assert_eq!(parse_hhmmss(b"040805"), Some(4 * 3600 + 8 * 60 + 5));
        assert_eq!(parse_hhmmss(b"240000"), None);
        for t in [0, 59, 86_399, 1_795_320_485, 253_402_300_799] {
            assert_eq!(timestamp(t), utc(t).format("%Y-%m-%dT%H%M%SZ").to_string().into_bytes());
        }
        assert_eq!(date_parts(1_795_320_485), [b"2026".to_vec(), b"11".to_vec(), b"22".to_vec()]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn escaping_is_a_safe_reversible_component(s in "\\PC*|[./%\\x00-\\x1f]{0,6}") {
            let e = escape(&s);
            prop_assert!(!e.is_empty() && !e.contains(&b'/') && !e.contains(&0));
            prop_assert!(e != b"." && e != b"..");
            prop_assert_eq!(unescape(&e).unwrap(), s.as_bytes().to_vec());
        }
    }
}
