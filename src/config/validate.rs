//! Reading values as bakthat 0.6 (PyYAML) wrote them: text that may be a number, YAML 1.1 booleans, whole numbers
//! given as text, weekday names; and the errors that name the dotted key of a bad value.
//!
//! Not here: which keys exist (see `profile.rs`).

use std::collections::BTreeMap;
use std::fmt;

use serde_norway::{Mapping, Value};

use super::{key_prefix, parse_weekday};

/// serde_norway puts " at line L column C" (or " at position P") in its messages; the location is reported apart.
pub(super) fn without_location(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(" at ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 4..];
        let skip = location_len(after);
        if skip == 0 {
            out.push_str(" at ");
        }
        rest = &after[skip..];
    }
    out.push_str(rest);
    out
}

/// The length of `line N column M` or `position N` at the start of `s`, or 0.
fn location_len(s: &str) -> usize {
    fn digits(s: &str) -> usize {
        s.bytes().take_while(u8::is_ascii_digit).count()
    }
    if let Some(rest) = s.strip_prefix("line ") {
        let n = digits(rest);
        if n > 0 {
            if let Some(col) = rest[n..].strip_prefix(" column ") {
                let m = digits(col);
                if m > 0 {
                    return "line ".len() + n + " column ".len() + m;
                }
            }
        }
    } else if let Some(rest) = s.strip_prefix("position ") {
        let n = digits(rest);
        if n > 0 {
            return "position ".len() + n;
        }
    }
    0
}

/// A value that does not fit: its dotted key (relative to where it was found) and what is wrong.
#[derive(Debug)]
pub(super) struct Bad {
    pub key: String,
    pub message: String,
}

impl Bad {
    pub fn new(key: &str, message: impl Into<String>) -> Bad {
        Bad { key: key.to_string(), message: message.into() }
    }

    /// The same problem seen from one level up.
    pub fn under(self, parent: &str) -> Bad {
        let key = if self.key.is_empty() { parent.to_string() } else { format!("{parent}.{}", self.key) };
        Bad { key, message: self.message }
    }
}

impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", key_prefix(&self.key), self.message)
    }
}

/// The entries of one YAML mapping, taken out key by key; what is left are the unknown keys.
pub(super) struct Entries {
    map: BTreeMap<String, Value>,
}

impl Entries {
    /// `expected` says what the value should have been; `null` (an empty block) counts as an empty mapping.
    pub fn new(value: Value, expected: &str) -> Result<Entries, Bad> {
        let mapping = match value {
            Value::Null => Mapping::new(),
            Value::Mapping(mapping) => mapping,
            other => return Err(Bad::new("", format!("expected {expected}, got {}", describe(&other)))),
        };
        let mut map = BTreeMap::new();
        for (key, value) in mapping {
            let name =
                key_text(&key).ok_or_else(|| Bad::new("", format!("keys must be text, got {}", describe(&key))))?;
            if map.insert(name.clone(), value).is_some() {
                return Err(Bad::new(&name, "appears twice"));
            }
        }
        Ok(Entries { map })
    }

    /// Removes a key; an empty value counts as absent.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    /// A key's text without taking it, for a key whose meaning depends on another.
    pub fn peek_text(&self, key: &str) -> Option<&str> {
        self.map.get(key).and_then(Value::as_str)
    }

    pub fn text(&mut self, key: &str) -> Result<Option<String>, Bad> {
        self.take(key).map(|v| text(v).map_err(|m| Bad::new(key, m))).transpose()
    }

    pub fn flag(&mut self, key: &str) -> Result<Option<bool>, Bad> {
        self.take(key).map(|v| flag(&v).map_err(|m| Bad::new(key, m))).transpose()
    }

    /// A whole number ≥ 0.
    pub fn count(&mut self, key: &str) -> Result<Option<i64>, Bad> {
        let Some(value) = self.take(key) else { return Ok(None) };
        match whole_number(&value) {
            Ok(n) if n >= 0 => Ok(Some(n)),
            Ok(n) => Err(Bad::new(key, format!("must be 0 or more, got {n}"))),
            Err(m) => Err(Bad::new(key, m)),
        }
    }

    pub fn texts(&mut self, key: &str) -> Result<Vec<String>, Bad> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Sequence(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| text(item).map_err(|m| Bad::new(&format!("{key}[{i}]"), m)))
                .collect(),
            Some(other) => Err(Bad::new(key, format!("expected a list, got {}", describe(&other)))),
        }
    }

    pub fn rest(self) -> BTreeMap<String, Value> {
        self.map
    }
}

/// A mapping key as text: strings as they are, numbers and booleans written out (a profile named `2024:` is
/// `"2024"`). Other keys have no text form.
pub(super) fn key_text(key: &Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Text; a number is taken as its digits (`auth_version: 2` is `"2"`).
pub(super) fn text(value: Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Err(format!("expected text, got {b}; put it in quotes: '{b}'")),
        other => Err(format!("expected text, got {}", describe(&other))),
    }
}

/// A boolean, also YAML 1.1's `yes`/`no`/`on`/`off`, which 0.6 (PyYAML) read as booleans.
pub(super) fn flag(value: &Value) -> Result<bool, String> {
    if let Value::Bool(b) = value {
        return Ok(*b);
    }
    match value.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("true" | "yes" | "on") => Ok(true),
        Some("false" | "no" | "off") => Ok(false),
        _ => Err(format!("expected true or false, got {}", describe(value))),
    }
}

/// A whole number as 0.6's `int()` took it: a YAML integer, a float with no fraction, or numeric text (`"7"`).
pub(super) fn whole_number(value: &Value) -> Result<i64, String> {
    let n = match value {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18).map(|f| f as i64))
        }
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.ok_or_else(|| format!("expected a whole number, got {}", describe(value)))
}

/// A weekday: a number 0..=6 (also as text) or a name, monday = 0.
pub(super) fn weekday(value: &Value) -> Result<i64, String> {
    let day = match value {
        Value::Number(_) => whole_number(value).ok().filter(|n| (0..7).contains(n)),
        Value::String(s) => parse_weekday(s),
        _ => None,
    };
    day.ok_or_else(|| {
        format!("expected a weekday name (monday … sunday) or a number 0-6 with monday = 0, got {}", describe(value))
    })
}

/// A short description of a value for messages.
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_string(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("{n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}
