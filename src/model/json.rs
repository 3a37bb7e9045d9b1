//! Small JSON helpers on raw text: herald forwards what Central produced, so it
//! re-serialises nothing it does not have to.

/// Where the JSON string whose text starts at `from` (just past its opening
/// quote) ends: the index just past its closing quote; `None` when it does
/// not end. Jumps from quote or backslash to the next, so long strings cost
/// little.
pub fn string_end(bytes: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let j = memchr::memchr2(b'"', b'\\', bytes.get(from..)?)?;
        if bytes[from + j] == b'"' {
            return Some(from + j + 1);
        }
        from += j + 2;
    }
}

/// Removes insignificant whitespace from valid JSON text, keeping every other
/// byte (key order, number spelling, string escapes) exactly as received.
/// Compact text (the usual case) comes back borrowed, uncopied.
pub fn minify(valid_json: &str) -> std::borrow::Cow<'_, str> {
    let bytes = valid_json.as_bytes();
    // The first whitespace outside a string, if any.
    let mut first = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => match string_end(bytes, i + 1) {
                Some(end) => i = end,
                None => break,
            },
            b' ' | b'\t' | b'\n' | b'\r' => {
                first = Some(i);
                break;
            }
            _ => i += 1,
        }
    }
    let Some(first) = first else {
        return std::borrow::Cow::Borrowed(valid_json);
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first]);
    let (mut in_string, mut escaped) = (false, false);
    for &b in &bytes[first..] {
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
    std::borrow::Cow::Owned(String::from_utf8(out).expect("minify keeps UTF-8 valid"))
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
        let s = r#"{"id":"a","policy":{"name":"n m \" }"}}"#;
        assert!(matches!(minify(s), std::borrow::Cow::Borrowed(t) if t == s));
    }
}
