//! The Microsoft Sentinel (Azure Monitor Logs Ingestion) body, as Central
//! builds it (central-compat §2.13): the alert or audit message as
//! protojson, decoded into a Go `map[string]interface{}` and encoded again by
//! Go's `encoding/json` (keys sorted, `<>&` escaped, numbers as float64),
//! wrapped as one record: `[{"msg": …}]`.

use serde_json::{Number, Value};

use super::gojson;
use crate::model::Event;

/// The Logs Ingestion API's limit for one call.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Numbers as Go prints a float64 read from JSON: `3.0` as `3`.
fn as_go_floats(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                    *n = Number::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(as_go_floats),
        Value::Object(m) => m.values_mut().for_each(as_go_floats),
        _ => {}
    }
}

/// `[{"msg": <event>}]` for one event.
pub fn body(event: &Event) -> Result<Vec<u8>, String> {
    let raw = match event {
        Event::Alert(a) => a.raw.get(),
        Event::Audit(a) => a.raw.get(),
    };
    let mut v: Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    as_go_floats(&mut v);
    let mut out = String::with_capacity(raw.len() + 16);
    out.push_str("[{\"msg\":");
    gojson::write_value(&mut out, &v);
    out.push_str("}]");
    Ok(out.into_bytes())
}

/// Central's test records: an audit request and an alert of a test policy.
pub fn test_audit() -> &'static str {
    r#"{"request":{"endpoint":"test-endpoint","method":"GET"}}"#
}

pub fn test_alert() -> &'static str {
    r#"{"policy":{"name":"test-policy","description":"Test policy description"},"clusterName":"test-cluster","clusterId":"00000000-0000-4000-8000-000000000000","namespace":"test-namespace"}"#
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_event;

    #[test]
    fn the_alert_is_go_json_with_sorted_keys_in_one_record() {
        let e = test_event(
            r#"{"id":"a1","policy":{"name":"<shell> & co","severity":"HIGH_SEVERITY"},"deployment":{"name":"d","containers":[{"name":"c"}]},"processViolation":{"processes":[{"signal":{"pid":42,"time":"2026-12-07T10:00:00Z"}}]},"score":3.0,"cvss":7.5,"clusterName":"prod"}"#,
        );
        assert_eq!(
            String::from_utf8(body(&e).unwrap()).unwrap(),
            concat!(
                r#"[{"msg":{"clusterName":"prod","cvss":7.5,"deployment":{"containers":[{"name":"c"}],"name":"d"},"#,
                r#""id":"a1","policy":{"name":"\u003cshell\u003e \u0026 co","severity":"HIGH_SEVERITY"},"#,
                r#""processViolation":{"processes":[{"signal":{"pid":42,"time":"2026-12-07T10:00:00Z"}}]},"score":3}}]"#
            )
        );
    }

    #[test]
    fn an_audit_message_is_its_own_record() {
        let e = test_event(
            r#"{"audit":{"time":"2026-12-07T10:00:00Z","request":{"method":"POST","endpoint":"/v1/notifiers"}}}"#,
        );
        assert_eq!(
            String::from_utf8(body(&e).unwrap()).unwrap(),
            r#"[{"msg":{"request":{"endpoint":"/v1/notifiers","method":"POST"},"time":"2026-12-07T10:00:00Z"}}]"#
        );
    }
}
