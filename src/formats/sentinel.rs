//! The Microsoft Sentinel (Azure Monitor Logs Ingestion) body, as Central
//! builds it (central-compat §2.13): the alert or audit message as
//! protojson, decoded into a Go `map[string]interface{}` and encoded again by
//! Go's `encoding/json` (keys sorted, `<>&` escaped, numbers as float64),
//! wrapped as one record: `[{"msg": …}]`.

use serde_json::Value;

use super::gojson;
use crate::model::Event;

/// The Logs Ingestion API's limit for one call.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// A number as Go's `encoding/json` prints the float64 it decoded it into:
/// fixed notation for 1e-6 <= |x| < 1e21, else the shortest exponent form
/// (`1e+21`, `1.5e-7`).
fn go_float(out: &mut String, f: f64) {
    use std::fmt::Write;
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        let _ = write!(out, "{f}");
        return;
    }
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    out.push_str(mantissa);
    out.push('e');
    match exp.strip_prefix('-') {
        Some(neg) => {
            out.push('-');
            out.push_str(neg);
        }
        None => {
            out.push('+');
            out.push_str(exp);
        }
    }
}

/// Go's rendering of a decoded `interface{}`: map keys sorted by bytes,
/// strings HTML-escaped, every number a float64.
fn go_value(out: &mut String, v: &Value) {
    match v {
        Value::Number(n) => go_float(out, n.as_f64().unwrap_or(0.0)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_value(out, item);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                gojson::write_string(out, k);
                out.push(':');
                go_value(out, &m[k]);
            }
            out.push('}');
        }
        other => gojson::write_value(out, other),
    }
}

/// One record `[{"msg": …}]` of protojson text.
pub fn record(raw: &str) -> Result<Vec<u8>, String> {
    let v: Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    let mut out = String::with_capacity(raw.len() + 16);
    out.push_str("[{\"msg\":");
    go_value(&mut out, &v);
    out.push_str("}]");
    Ok(out.into_bytes())
}

/// `[{"msg": <event>}]` for one event.
pub fn body(event: &Event) -> Result<Vec<u8>, String> {
    let raw = match event {
        Event::Alert(a) => a.raw.get(),
        Event::Audit(a) => a.raw.get(),
    };
    record(raw)
}

/// Central's test records (protojson): an audit request and an alert of a
/// test policy (Central's `getTestAlert`, with its dummy cluster id).
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
    fn numbers_print_as_go_prints_a_float64() {
        let got = String::from_utf8(
            record(r#"{"a":[0.000005,1e21,1.5e-7,9007199254740993,-0.0,3.0,7.25,1.5e300]}"#)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            got,
            r#"[{"msg":{"a":[0.000005,1e+21,1.5e-7,9007199254740992,-0,3,7.25,1.5e+300]}}]"#
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
