//! Go `encoding/json` output rules (central-compat §0.1 "G" and "S"): Central builds several
//! payload parts with Go's encoder, whose string escaping differs from serde_json's.

mod convert;
pub mod schema;
mod stream;

pub use convert::{alert, audit, ordered as write_struct, plain as write_value, shrink, snake};

/// Appends `s` as a Go `encoding/json` string literal (HTML escaping on):
/// `<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX`; `\n`, `\r`, `\t`, `\b`, `\f`
/// short forms (Go ≥ 1.22); other control characters as `\u00XX`.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '<' => Some("\\u003c"),
            '>' => Some("\\u003e"),
            '&' => Some("\\u0026"),
            '\u{2028}' => Some("\\u2028"),
            '\u{2029}' => Some("\\u2029"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => out.push_str(&format!("\\u{:04x}", c as u32)),
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A Go `map[string]string` marshalled: keys sorted bytewise, HTML-escaped.
pub fn string_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str)> = pairs.into_iter().collect();
    // Go's map has one value per key: the last written wins.
    sorted.reverse();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    sorted.dedup_by(|a, b| a.0 == b.0);
    let mut out = String::from("{");
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(&mut out, k);
        out.push(':');
        write_string(&mut out, v);
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        let mut out = String::new();
        write_string(&mut out, v);
        out
    }

    #[test]
    fn escapes_like_go() {
        assert_eq!(s("plain é ✓"), "\"plain é ✓\"");
        assert_eq!(s("a<b>&\"c\\"), r#""a\u003cb\u003e\u0026\"c\\""#);
        assert_eq!(
            s("\n\r\t\u{8}\u{c}\u{1}\u{1f}"),
            r#""\n\r\t\b\f\u0001\u001f""#
        );
        assert_eq!(s("\u{2028}\u{2029}\u{7f}"), "\"\\u2028\\u2029\u{7f}\"");
    }

    #[test]
    fn map_sorted_and_last_value_wins() {
        let m = string_map([("b", "2"), ("a", "1"), ("B", "x"), ("b", "3")]);
        assert_eq!(m, r#"{"B":"x","a":"1","b":"3"}"#);
        assert_eq!(string_map([]), "{}");
    }
}
