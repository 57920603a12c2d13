//! Writing YAML that both YAML 1.1 (PyYAML, bakthat 0.6) and YAML 1.2 (serde_norway) read back as the same values.
//! serde_norway's own serializer leaves `yes`, `on`, `1:30` or `2024-01-01` unquoted, which PyYAML would read as a
//! boolean, a number or a date.
//!
//! Not here: which keys a profile has (see `profile.rs`) or their order (see `Config::to_yaml`).

use serde_norway::{Mapping, Value};

// boolean, a number or a date.

/// The whole document, in block style.
pub(super) fn emit_document(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Mapping(mapping) if !mapping.is_empty() => emit_mapping(mapping, 0, &mut out),
        other => {
            out.push_str(&inline(other, false));
            out.push('\n');
        }
    }
    out
}

/// Entries of a block mapping, each on a new line at `indent`.
fn emit_mapping(mapping: &Mapping, indent: usize, out: &mut String) {
    for (key, value) in mapping {
        out.extend(std::iter::repeat_n(' ', indent));
        let key_text = inline(key, true);
        let simple =
            matches!(key, Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)) && key_text.len() < 1000;
        if simple {
            out.push_str(&key_text);
        } else {
            // YAML allows only short scalars as implicit keys; others take the explicit `? key` form.
            out.push_str("? ");
            out.push_str(&key_text);
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', indent));
        }
        out.push(':');
        emit_value(value, indent, out);
    }
}

/// A value after `key:` or `-` on the current line; nested blocks go below at `indent + 2`.
fn emit_value(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Mapping(mapping) if !mapping.is_empty() => {
            out.push('\n');
            emit_mapping(mapping, indent + 2, out);
        }
        Value::Sequence(items) if !items.is_empty() => {
            out.push('\n');
            for item in items {
                out.extend(std::iter::repeat_n(' ', indent + 2));
                out.push('-');
                emit_value(item, indent + 2, out);
            }
        }
        Value::Tagged(tagged) if is_block(&tagged.value) => {
            out.push(' ');
            out.push_str(&tagged.tag.to_string());
            emit_value(&tagged.value, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other, false));
            out.push('\n');
        }
    }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Mapping(m) => !m.is_empty(),
        Value::Sequence(s) => !s.is_empty(),
        _ => false,
    }
}

/// A value on one line; collections in flow style. `flow` is set inside flow collections and keys.
fn inline(value: &Value, flow: bool) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => scalar(s, flow),
        Value::Sequence(items) => {
            format!("[{}]", items.iter().map(|v| inline(v, true)).collect::<Vec<_>>().join(", "))
        }
        Value::Mapping(mapping) => format!(
            "{{{}}}",
            mapping
                .iter()
                .map(|(k, v)| format!("{}: {}", inline(k, true), inline(v, true)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, inline(&tagged.value, flow)),
    }
}

/// A number. Floats get the `1.0e+10` shape, the only one YAML 1.1 reads as a float.
fn number(n: &serde_norway::Number) -> String {
    let text = n.to_string();
    if !n.is_f64() || text.starts_with(['.', '-']) && text.ends_with(['f', 'n']) {
        return text;
    }
    let (mantissa, exponent) = match text.split_once('e') {
        Some((m, e)) => (m.to_string(), Some(e.to_string())),
        None => (text.clone(), None),
    };
    let mantissa = if mantissa.contains('.') { mantissa } else { format!("{mantissa}.0") };
    match exponent {
        Some(e) if e.starts_with('-') => format!("{mantissa}e{e}"),
        Some(e) => format!("{mantissa}e+{e}"),
        None => mantissa,
    }
}

/// Words that YAML 1.1 (or 1.2) reads as booleans or null when unquoted.
const RESERVED_WORDS: [&str; 9] = ["y", "n", "yes", "no", "true", "false", "on", "off", "null"];

/// A string scalar: plain when it cannot be read as anything else, else single-quoted, else double-quoted with
/// escapes when it holds characters single quotes cannot carry.
fn scalar(s: &str, flow: bool) -> String {
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_./@+=-".contains(c) || (c == ':' && !flow))
        && !s.ends_with(':')
        && !RESERVED_WORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        return s.to_string();
    }
    let needs_escape =
        |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}');
    if !s.chars().any(needs_escape) {
        return format!("'{}'", s.replace('\'', "''"));
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if needs_escape(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
