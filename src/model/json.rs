//! Small JSON helpers on raw text: herald forwards what Central produced, so it
//! re-serialises nothing it does not have to.

/// Removes insignificant whitespace from valid JSON text, keeping every other
/// byte (key order, number spelling, string escapes) exactly as received.
pub fn minify(valid_json: &str) -> String {
    let bytes = valid_json.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b'"' => {
                    in_string = true;
                    out.push(b);
                }
                _ => out.push(b),
            }
        }
    }
    // Only ASCII whitespace outside strings was removed, so UTF-8 stays valid.
    String::from_utf8(out).expect("minify keeps UTF-8 valid")
}

#[cfg(test)]
mod tests {
    use super::minify;

    #[test]
    fn keeps_order_strings_and_numbers() {
        let input = "{\n  \"b\" : 1.50,\n  \"a\": [ \"x y\", \"q\\\" z\\\\\" ],\t\"é\": {\"k\" : \"\\u00e9 \"} }";
        assert_eq!(
            minify(input),
            "{\"b\":1.50,\"a\":[\"x y\",\"q\\\" z\\\\\"],\"é\":{\"k\":\"\\u00e9 \"}}"
        );
    }

    #[test]
    fn compact_input_is_unchanged() {
        let s = r#"{"id":"a","policy":{"name":"n m"}}"#;
        assert_eq!(minify(s), s);
    }
}
