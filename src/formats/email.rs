//! Alert emails (central-compat §2.5): the whole message as Central writes it — plain
//! text FormatAlert, word-wrapped at 78 columns, CRLF line ends, 8-bit UTF-8 —
//! except for an RFC 5322 `Date`, a deterministic `Message-ID` and an RFC 2047
//! `Subject` when it is not ASCII.

use base64::Engine;
use chrono::{DateTime, Utc};

/// Who the message is from: Central's `From` rule.
pub fn from_header(display: &str, sender: &str) -> String {
    if display.is_empty() {
        sender.to_string()
    } else {
        format!("{display} <{sender}>")
    }
}

/// Word wrapping as Go's `github.com/mitchellh/go-wordwrap` v1.0.1 does it
/// (Central's): breaks only at white space, never splits a word, counts
/// characters, treats a no-break space as part of a word.
pub fn wrap(s: &str, lim: usize) -> String {
    let mut buf = String::with_capacity(s.len() + s.len() / 32);
    let mut current = 0usize;
    let (mut word, mut word_len) = (String::new(), 0usize);
    let (mut space, mut space_len) = (String::new(), 0usize);
    for c in s.chars() {
        if c == '\n' {
            if word.is_empty() {
                if current + space_len <= lim {
                    buf.push_str(&space);
                }
            } else {
                buf.push_str(&space);
                buf.push_str(&word);
                word.clear();
                word_len = 0;
            }
            space.clear();
            space_len = 0;
            buf.push(c);
            current = 0;
        } else if c.is_whitespace() && c != '\u{a0}' {
            if space.is_empty() || !word.is_empty() {
                current += space_len + word_len;
                buf.push_str(&space);
                buf.push_str(&word);
                space.clear();
                space_len = 0;
                word.clear();
                word_len = 0;
            }
            space.push(c);
            space_len += 1;
        } else {
            word.push(c);
            word_len += 1;
            if current + space_len + word_len > lim && word_len < lim {
                buf.push('\n');
                current = 0;
                space.clear();
                space_len = 0;
            }
        }
    }
    if word.is_empty() {
        if current + space_len <= lim {
            buf.push_str(&space);
        }
    } else {
        buf.push_str(&space);
        buf.push_str(&word);
    }
    buf
}

/// Every line break as CRLF.
pub fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// The subject as is when printable ASCII, else RFC 2047 base64
/// encoded-words: a policy name with a line break in it cannot start a
/// header of its own (a `Bcc:`), since encoded words carry no raw byte.
pub fn subject(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return s.to_string();
    }
    // Encoded words of at most 75 characters: 45 bytes of text each.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?utf-8?b?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// The pieces of one message.
pub struct Message<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub date: DateTime<Utc>,
    pub subject: &'a str,
    pub message_id: &'a str,
    /// The body before wrapping.
    pub body: &'a str,
}

/// The whole message, headers and body.
pub fn message(m: &Message<'_>) -> Vec<u8> {
    let body = crlf(&wrap(m.body, 78));
    format!(
        "From: {}\r\nTo: {}\r\nDate: {}\r\nSubject: {}\r\nMessage-ID: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n\r\n{body}\r\n",
        m.from,
        m.to,
        m.date.to_rfc2822(),
        subject(m.subject),
        m.message_id,
    )
    .into_bytes()
}

/// A Message-ID that is the same for every send of one alert state, so
/// duplicates are recognisable and mail clients thread: the domain is the
/// sender's.
pub fn message_id(key: &str, state: &str, sender: &str) -> String {
    let domain = sender.rsplit_once('@').map_or("herald.invalid", |(_, d)| d);
    let clean: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("<herald.{clean}.{}@{domain}>", state.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_like_go_wordwrap() {
        assert_eq!(wrap("aaa bbb ccc", 7), "aaa bbb\nccc");
        assert_eq!(wrap("aaa bbb ccc", 8), "aaa bbb\nccc");
        assert_eq!(wrap("a verylongword b", 4), "a\nverylongword\nb");
        assert_eq!(wrap("keep\nlines  ", 78), "keep\nlines  ");
        assert_eq!(wrap("no\u{a0}break here", 8), "no\u{a0}break\nhere");
        let line = format!("\t - {}", "word ".repeat(30));
        let w = wrap(&line, 78);
        assert!(w.lines().all(|l| l.chars().count() <= 78), "{w}");
        assert_eq!(
            w.replace('\n', " ").split_whitespace().count(),
            line.split_whitespace().count()
        );
    }

    #[test]
    fn headers_and_body_exactly() {
        let date = DateTime::parse_from_rfc3339("2024-05-01T12:03:18Z")
            .unwrap()
            .with_timezone(&Utc);
        let m = Message {
            from: &from_header("RHACS", "rhacs@example.com"),
            to: "team@example.com",
            date,
            subject: "Deployment d (in cluster c) violates 'P' Policy",
            message_id: &message_id("a1", "ACTIVE", "rhacs@example.com"),
            body: "Alert ID: a1\r\nSeverity: High\r\n",
        };
        assert_eq!(
            String::from_utf8(message(&m)).unwrap(),
            "From: RHACS <rhacs@example.com>\r\nTo: team@example.com\r\nDate: Wed, 1 May 2024 12:03:18 +0000\r\nSubject: Deployment d (in cluster c) violates 'P' Policy\r\nMessage-ID: <herald.a1.active@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n\r\nAlert ID: a1\r\nSeverity: High\r\n\r\n"
        );
        assert_eq!(from_header("", "s@x"), "s@x");
    }

    #[test]
    fn a_line_break_in_a_subject_cannot_add_a_header() {
        let s = subject("P\r\nBcc: attacker@example.com");
        assert_eq!(s, "=?utf-8?b?UA0KQmNjOiBhdHRhY2tlckBleGFtcGxlLmNvbQ==?=");
        let m = Message {
            from: "s@x",
            to: "t@x",
            date: Utc::now(),
            subject: "P\nBcc: a@b",
            message_id: &message_id("a\r\nBcc: a@b", "ACTIVE", "s@x"),
            body: "",
        };
        let text = String::from_utf8(message(&m)).unwrap();
        let headers = &text[..text.find("\r\n\r\n").unwrap()];
        assert!(headers.lines().all(|l| !l.starts_with("Bcc")), "{headers}");
        assert_eq!(headers.matches("\r\n").count(), 6, "{headers}");
    }

    #[test]
    fn non_ascii_subjects_are_encoded_words() {
        assert_eq!(
            subject("Policy 'é' violated"),
            "=?utf-8?b?UG9saWN5ICfDqScgdmlvbGF0ZWQ=?="
        );
        let long = "é".repeat(40);
        let s = subject(&long);
        assert!(
            s.split("\r\n ")
                .all(|w| w.len() <= 75 && w.starts_with("=?utf-8?b?")),
            "{s}"
        );
    }
}
