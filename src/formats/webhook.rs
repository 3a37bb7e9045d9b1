//! Generic webhook body (central-compat §2.3), built by concatenation as Central does:
//! `{"alert": <alert>}`, or with extra fields `{"k":"v",…,"alert": <alert>}`.

use super::gojson;
use crate::model::Event;

/// The request body for `event`; `extra_fields` in config order (Central sorts them).
pub fn body<'a>(
    event: &Event,
    extra_fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<u8> {
    let (key, raw) = match event {
        Event::Alert(a) => ("alert", a.raw.get()),
        Event::Audit(a) => ("audit", a.raw.get()),
    };
    let mut extra = extra_fields.into_iter().peekable();
    let mut out = String::with_capacity(raw.len() + 64);
    if extra.peek().is_none() {
        out.push_str("{\"");
    } else {
        let object = gojson::string_map(extra);
        out.push_str(&object[..object.len() - 1]);
        out.push_str(",\"");
    }
    out.push_str(key);
    out.push_str("\": ");
    out.push_str(raw);
    out.push('}');
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decode;

    fn event(json: &str) -> Event {
        decode(json.as_bytes(), &crate::model::Limits::default()).unwrap()
    }

    #[test]
    fn alert_without_extra_fields() {
        let e = event("{\n \"id\": \"a1\",\n \"policy\": {\"name\": \"P <x>\"}\n}");
        assert_eq!(
            String::from_utf8(body(&e, [])).unwrap(),
            r#"{"alert": {"id":"a1","policy":{"name":"P <x>"}}}"#
        );
    }

    #[test]
    fn alert_with_extra_fields_sorted_first() {
        let e = event(r#"{"alert":{"id":"a1","policy":{}}}"#);
        let b = body(&e, [("source", "rhacs"), ("env", "prod&dev")]);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            r#"{"env":"prod\u0026dev","source":"rhacs","alert": {"id":"a1","policy":{}}}"#
        );
    }

    #[test]
    fn audit_uses_audit_key() {
        let e = event(r#"{"audit": {"status": "REQUEST_SUCCEEDED"}}"#);
        assert_eq!(
            String::from_utf8(body(&e, [("k", "v")])).unwrap(),
            r#"{"k":"v","audit": {"status":"REQUEST_SUCCEEDED"}}"#
        );
    }
}
