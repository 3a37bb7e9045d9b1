//! Message value → [`Event`], or the reason it is not one.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::json::minify;
use super::{Alert, AlertFields, Audit, AuditFields, Event};

/// Why a message value is not an event; the label is used in metrics and
/// dead-letter records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidReason {
    TooLarge,
    NotUtf8,
    NotJson,
    NotObject,
    UnknownShape,
    InvalidAlert,
    InvalidAudit,
    /// Nested deeper than [`Limits::max_depth`]: every walker of the JSON
    /// (converters, pruning, the dead-letter writer) stays within its stack.
    TooDeep,
}

impl InvalidReason {
    pub const ALL: [InvalidReason; 8] = [
        InvalidReason::TooLarge,
        InvalidReason::TooDeep,
        InvalidReason::NotUtf8,
        InvalidReason::NotJson,
        InvalidReason::NotObject,
        InvalidReason::UnknownShape,
        InvalidReason::InvalidAlert,
        InvalidReason::InvalidAudit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::TooLarge => "too_large",
            InvalidReason::NotUtf8 => "not_utf8",
            InvalidReason::NotJson => "not_json",
            InvalidReason::NotObject => "not_object",
            InvalidReason::UnknownShape => "unknown_shape",
            InvalidReason::InvalidAlert => "invalid_alert",
            InvalidReason::InvalidAudit => "invalid_audit",
            InvalidReason::TooDeep => "too_deep",
        }
    }
}

/// A message that is not an RHACS alert or audit event. `detail` never holds
/// the payload itself, only where and why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMessage {
    pub reason: InvalidReason,
    pub detail: String,
}

impl fmt::Display for InvalidMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

fn invalid(reason: InvalidReason, detail: impl Into<String>) -> InvalidMessage {
    InvalidMessage {
        reason,
        detail: detail.into(),
    }
}

/// What a message value may be: its size in bytes and how deep its JSON nests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    /// Arrays and objects inside each other, the outermost counting 1.
    /// Central's alerts nest about 8 deep; serde_json's own parser stops at
    /// 128, which is therefore the most this may be.
    pub max_depth: usize,
}

/// The largest `kafka.max_message_bytes` may be (64 MiB): nothing herald
/// stores claims more.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// serde_json's recursion limit: the deepest any herald walker is given.
pub const MAX_DEPTH: usize = 128;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 4 << 20,
            max_depth: MAX_DEPTH,
        }
    }
}

/// How deep `text` nests (arrays and objects), scanning bytes without
/// recursion, so any input, however deep, is measured safely. Stops counting
/// once past `limit`.
fn depth_over(text: &[u8], limit: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i = super::json::string_end(text, i + 1)?;
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Decodes one Kafka message value: the generic-webhook envelope
/// `{"alert": …}` / `{"audit": …}` (other top-level keys are the sender's extra
/// fields and are ignored), or a bare alert object.
pub fn decode(value: &[u8], limits: &Limits) -> Result<Event, InvalidMessage> {
    let max_bytes = limits.max_bytes;
    if value.len() > max_bytes {
        return Err(invalid(
            InvalidReason::TooLarge,
            format!(
                "{} bytes exceeds the limit of {max_bytes} bytes",
                value.len()
            ),
        ));
    }
    let text = std::str::from_utf8(value).map_err(|e| {
        invalid(
            InvalidReason::NotUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    if text.trim().is_empty() {
        return Err(invalid(InvalidReason::NotJson, "empty message"));
    }
    let max_depth = limits.max_depth.min(MAX_DEPTH);
    if let Some(at) = depth_over(value, max_depth) {
        return Err(invalid(
            InvalidReason::TooDeep,
            format!("nested deeper than {max_depth} levels at byte {at}"),
        ));
    }
    let not_json = |e: serde_json::Error| {
        invalid(
            InvalidReason::NotJson,
            format!("line {} column {}: {}", e.line(), e.column(), category(&e)),
        )
    };
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        // Not an object: say which JSON it is, or that it is none.
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(not_json)?;
        return Err(invalid(
            InvalidReason::NotObject,
            format!("top-level value is {}", json_kind(trimmed)),
        ));
    }
    // One pass over the message: the envelope's members, the alert or
    // audit object kept as its raw text.
    let top: Envelope = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            invalid(InvalidReason::NotObject, strip_position(&e.to_string()))
        }
        _ => not_json(e),
    })?;
    match (top.alert, top.audit) {
        (Some(_), Some(_)) => Err(invalid(
            InvalidReason::UnknownShape,
            "both \"alert\" and \"audit\" keys present",
        )),
        (Some(alert), None) => decode_alert(alert, "alert"),
        (None, Some(audit)) => decode_audit(audit),
        (None, None) if top.id.is_some() && top.policy.is_some() => {
            let bare = RawValue::from_string(text.trim().to_string())
                .map_err(|e| invalid(InvalidReason::NotJson, e.to_string()))?;
            decode_alert(bare, "")
        }
        (None, None) => Err(invalid(
            InvalidReason::UnknownShape,
            "expected {\"alert\": …}, {\"audit\": …} or an alert object with \"id\" and \"policy\"",
        )),
    }
}

/// The members of a message value herald looks at; other top-level keys
/// (a sender's extra fields) are skipped. A member named twice is refused.
#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(default)]
    alert: Option<Box<RawValue>>,
    #[serde(default)]
    audit: Option<Box<RawValue>>,
    #[serde(default)]
    id: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    policy: Option<serde::de::IgnoredAny>,
}

fn decode_alert(raw: Box<RawValue>, prefix: &str) -> Result<Event, InvalidMessage> {
    let fail = |detail: String| invalid(InvalidReason::InvalidAlert, detail);
    if !raw.get().starts_with('{') {
        return Err(fail(format!(
            "{prefix}: is {}, not an object",
            json_kind(raw.get())
        )));
    }
    let fields: AlertFields = typed(&raw, prefix).map_err(fail)?;
    if fields.id.is_empty() {
        return Err(fail(join(prefix, "id: missing or empty")));
    }
    Ok(Event::Alert(Alert {
        raw: minified(raw),
        fields: Box::new(fields),
    }))
}

fn decode_audit(raw: Box<RawValue>) -> Result<Event, InvalidMessage> {
    let fail = |detail: String| invalid(InvalidReason::InvalidAudit, detail);
    if !raw.get().starts_with('{') {
        return Err(fail(format!(
            "audit: is {}, not an object",
            json_kind(raw.get())
        )));
    }
    let fields: AuditFields = typed(&raw, "audit").map_err(fail)?;
    Ok(Event::Audit(Audit {
        raw: minified(raw),
        fields: Box::new(fields),
    }))
}

/// The typed fields; only a failure pays for finding the field's path.
fn typed<T: DeserializeOwned>(raw: &RawValue, prefix: &str) -> Result<T, String> {
    if let Ok(v) = serde_json::from_str(raw.get()) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let what = e.into_inner();
        join(
            prefix,
            &format!("{path}: {}", strip_position(&what.to_string())),
        )
    })
}

/// The raw text without insignificant whitespace: as it is when compact
/// (Central's), copied and minified otherwise.
fn minified(raw: Box<RawValue>) -> Box<RawValue> {
    match minify(raw.get()) {
        std::borrow::Cow::Borrowed(_) => raw,
        std::borrow::Cow::Owned(s) => RawValue::from_string(s).expect("minified JSON stays valid"),
    }
}

fn join(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.starts_with(':')) {
        (true, true) => format!("(root){rest}"),
        (true, false) => rest.to_string(),
        (false, true) => format!("{prefix}{rest}"),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

/// serde_json appends "at line L column C"; the path already says where.
fn strip_position(msg: &str) -> &str {
    msg.find(" at line ").map_or(msg, |i| &msg[..i])
}

fn category(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "invalid data",
        serde_json::error::Category::Io => "read error",
    }
}

fn json_kind(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// An event (alert or audit message) from JSON, for tests.
#[cfg(test)]
pub fn test_event(json: &str) -> Event {
    decode(json.as_bytes(), &Limits::default()).expect("a valid test event")
}

/// An alert from protojson, for formatter tests.
#[cfg(test)]
pub fn test_alert(json: &str) -> super::Alert {
    match test_event(json) {
        Event::Alert(a) => a,
        Event::Audit(_) => panic!("not an alert: {json}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlertState, LifecycleStage, Severity};

    const MAX: &Limits = &Limits {
        max_bytes: 4 << 20,
        max_depth: MAX_DEPTH,
    };

    fn reason(input: &[u8]) -> InvalidReason {
        decode(input, MAX).unwrap_err().reason
    }

    #[test]
    fn accepts_envelope_and_bare_alert() {
        let bare = br#"{"id":"a1","policy":{"name":"P","severity":"HIGH_SEVERITY","notifiers":["n1"]},"lifecycleStage":"RUNTIME","state":"RESOLVED"}"#;
        let Event::Alert(a) = decode(bare, MAX).unwrap() else {
            panic!("not an alert")
        };
        assert_eq!(a.fields.id, "a1");
        assert_eq!(a.fields.policy.severity, Severity::High);
        assert_eq!(a.fields.lifecycle_stage, LifecycleStage::Runtime);
        assert_eq!(a.fields.state, AlertState::Resolved);

        let env = br#"{"source":"x", "alert" : {"id":"a2", "policy":{"severity":3}}}"#;
        let Event::Alert(a) = decode(env, MAX).unwrap() else {
            panic!("not an alert")
        };
        assert_eq!(a.raw.get(), r#"{"id":"a2","policy":{"severity":3}}"#);
        assert_eq!(a.fields.policy.severity, Severity::High);
    }

    #[test]
    fn accepts_audit() {
        let env = br#"{"audit":{"time":"2024-05-01T12:10:02.118356Z","status":"REQUEST_SUCCEEDED","user":{"username":"admin","roles":[{"name":"Admin"}]}}}"#;
        let Event::Audit(a) = decode(env, MAX).unwrap() else {
            panic!("not audit")
        };
        assert_eq!(a.fields.user.unwrap().roles[0].name, "Admin");
    }

    #[test]
    fn classifies_invalid_messages() {
        assert_eq!(reason(b"\xff\xfe"), InvalidReason::NotUtf8);
        assert_eq!(reason(b""), InvalidReason::NotJson);
        assert_eq!(reason(b"{\"alert\":"), InvalidReason::NotJson);
        assert_eq!(reason(b"[1,2]"), InvalidReason::NotObject);
        assert_eq!(reason(b"\"text\""), InvalidReason::NotObject);
        assert_eq!(reason(b"{\"hello\":1}"), InvalidReason::UnknownShape);
        assert_eq!(
            reason(b"{\"alert\":{},\"audit\":{}}"),
            InvalidReason::UnknownShape
        );
        assert_eq!(reason(b"{\"alert\":[]}"), InvalidReason::InvalidAlert);
        assert_eq!(
            reason(b"{\"alert\":{\"policy\":{}}}"),
            InvalidReason::InvalidAlert
        );
        assert_eq!(reason(b"{\"audit\":5}"), InvalidReason::InvalidAudit);
        assert_eq!(
            decode(
                &[b' '; 11],
                &Limits {
                    max_bytes: 10,
                    ..Limits::default()
                }
            )
            .unwrap_err()
            .reason,
            InvalidReason::TooLarge
        );
    }

    #[test]
    fn nesting_past_the_limit_is_too_deep_however_deep() {
        // 200,000 levels: measured without recursion, refused before parsing.
        let n = 200_000;
        let deep = format!(
            r#"{{"alert":{{"id":"x","policy":{{}},"deep":{}{}}}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        );
        let err = decode(deep.as_bytes(), MAX).unwrap_err();
        assert_eq!(err.reason, InvalidReason::TooDeep);
        assert_eq!(err.detail, "nested deeper than 128 levels at byte 164");
        // Exactly at the limit is fine; brackets inside strings do not count.
        let at = |levels: usize| {
            format!(
                r#"{{"alert":{{"id":"x","policy":{{"name":"[[[{{"}},"d":{}{}}}}}"#,
                "[".repeat(levels - 2),
                "]".repeat(levels - 2)
            )
        };
        let shallow = Limits {
            max_depth: 10,
            ..Limits::default()
        };
        assert!(decode(at(10).as_bytes(), &shallow).is_ok());
        assert_eq!(
            decode(at(11).as_bytes(), &shallow).unwrap_err().reason,
            InvalidReason::TooDeep
        );
        // A limit above serde_json's own is held at 128.
        let huge = Limits {
            max_depth: 1 << 20,
            ..Limits::default()
        };
        assert_eq!(
            decode(at(129).as_bytes(), &huge).unwrap_err().reason,
            InvalidReason::TooDeep
        );
        assert!(decode(at(128).as_bytes(), &huge).is_ok());
    }

    #[test]
    fn depth_skips_strings_with_escapes_and_stops_at_a_cut_off_one() {
        assert_eq!(depth_over(br#"[["\"[[[", "\\"], [1]]"#, 2), None);
        assert_eq!(depth_over(br#"[["\\", [[1]]]]"#, 3), Some(9));
        // A string cut off after a backslash, or unterminated: no panic.
        assert_eq!(depth_over(br#"[["abc\"#, 1), Some(1));
        assert_eq!(depth_over(br#"["abc\"#, 1), None);
        assert_eq!(depth_over(br#"["abc"#, 1), None);
        assert_eq!(depth_over(b"", 1), None);
    }

    #[test]
    fn invalid_detail_names_the_field_not_the_payload() {
        let err = decode(
            br#"{"alert":{"id":"x","policy":{"severity":"SECRET_LEVEL"}}}"#,
            MAX,
        )
        .unwrap_err();
        assert_eq!(err.reason, InvalidReason::InvalidAlert);
        assert!(
            err.detail.starts_with("alert.policy.severity: "),
            "{}",
            err.detail
        );

        let err = decode(br#"{"id":"x","policy":{},"time":"yesterday"}"#, MAX).unwrap_err();
        assert!(
            err.detail.starts_with("time: invalid timestamp"),
            "{}",
            err.detail
        );
    }
}
