//! protojson → Go `encoding/json` of the generated structs (central-compat §0.1 "G"),
//! the form Central embeds in syslog CEF. Driven by the schema tables in
//! `schema.rs`: names become proto field names, enums their numbers,
//! Timestamps `{"seconds":…,"nanos":…}`, oneofs are wrapped in their Go
//! names, map keys are sorted; field order stays as received (Central emits
//! proto declaration order).

use serde_json::Value;

use super::schema::{self, Field, Kind, Message};
use super::write_string;

/// Converts a protojson `storage.Alert`.
pub fn alert(raw: &str) -> Result<String, String> {
    convert(raw, &schema::ALERT)
}

/// Converts a protojson `v1.Audit.Message`.
pub fn audit(raw: &str) -> Result<String, String> {
    convert(raw, &schema::AUDIT_MESSAGE)
}

fn convert(raw: &str, msg: &Message) -> Result<String, String> {
    let mut fast = super::stream::Stream::new(raw);
    if fast.message(msg).is_some() && fast.finished() {
        return Ok(fast.out);
    }
    let v: Value = serde_json::from_str(raw).map_err(|e| format!("not JSON: {e}"))?;
    let mut out = String::with_capacity(raw.len() + raw.len() / 4);
    message(&mut out, &v, msg);
    Ok(out)
}

/// lowerCamelCase → snake_case, the default proto field name.
pub fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A message in Go struct (declaration) order, which is the order Go's
/// encoder writes whatever order the protojson had. A oneof is written where
/// its first member is declared — as `"Entity":null` when no member is set,
/// since encoding/json does not omit a nil interface field. Fields the schema
/// does not know follow, in input order, with snake_case names.
fn message(out: &mut String, v: &Value, msg: &Message) {
    let Some(obj) = v.as_object() else {
        plain(out, v);
        return;
    };
    let lookup = |f: &Field| obj.get(f.json).or_else(|| obj.get(f.go));
    let mut parts: Vec<(&str, String)> = Vec::new();
    let mut done_oneofs: Vec<&str> = Vec::new();
    for f in msg.fields {
        match f.oneof {
            Some((iface, _)) => {
                if done_oneofs.contains(&iface) {
                    continue;
                }
                done_oneofs.push(iface);
                let set = msg
                    .fields
                    .iter()
                    .filter(|m| m.oneof.is_some_and(|(i, _)| i == iface))
                    .find_map(|m| lookup(m).map(|v| (m, v)));
                let mut s = String::new();
                match set {
                    Some((m, value)) => {
                        let wrapper = m.oneof.expect("oneof member").1;
                        s.push('{');
                        write_string(&mut s, wrapper);
                        s.push(':');
                        typed(&mut s, value, &m.kind);
                        s.push('}');
                    }
                    None => s.push_str("null"),
                }
                parts.push((iface, s));
            }
            None => {
                if let Some(value) = lookup(f) {
                    let mut s = String::new();
                    typed(&mut s, value, &f.kind);
                    parts.push((f.go, s));
                }
            }
        }
    }
    out.push('{');
    for (i, (name, value)) in parts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, name);
        out.push(':');
        out.push_str(value);
    }
    let mut first = parts.is_empty();
    for (key, value) in obj {
        if msg.field(key).is_some() {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_string(out, &snake(key));
        out.push(':');
        unknown(out, value);
    }
    out.push('}');
}

fn typed(out: &mut String, v: &Value, kind: &Kind) {
    if let Value::Array(items) = v {
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            typed(out, item, kind);
        }
        out.push(']');
        return;
    }
    match kind {
        Kind::Scalar => plain(out, v),
        Kind::Int64 => match v {
            // protojson writes 64-bit integers as strings; Go writes numbers.
            Value::String(s) if s.parse::<i128>().is_ok() => out.push_str(s),
            _ => plain(out, v),
        },
        Kind::Enum(values) => match v {
            Value::String(name) => match values.iter().find(|(n, _)| n == name) {
                Some((_, num)) => out.push_str(&num.to_string()),
                None => plain(out, v),
            },
            _ => plain(out, v),
        },
        Kind::Message(m) => message(out, v, m),
        Kind::Timestamp => timestamp(out, v),
        Kind::Any => any(out, v),
        Kind::Map(value_kind) => map(out, v, value_kind),
    }
}

fn map(out: &mut String, v: &Value, value_kind: &Kind) {
    let Some(obj) = v.as_object() else {
        plain(out, v);
        return;
    };
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    out.push('{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, k);
        out.push(':');
        typed(out, &obj[k], value_kind);
    }
    out.push('}');
}

/// `{"seconds":N,"nanos":N}`; both are `omitempty` in the Go struct.
fn timestamp(out: &mut String, v: &Value) {
    let parsed = v
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    let Some(t) = parsed else {
        plain(out, v);
        return;
    };
    let (secs, nanos) = (t.timestamp(), t.timestamp_subsec_nanos());
    out.push('{');
    if secs != 0 {
        out.push_str(&format!("\"seconds\":{secs}"));
    }
    if nanos != 0 {
        if secs != 0 {
            out.push(',');
        }
        out.push_str(&format!("\"nanos\":{nanos}"));
    }
    out.push('}');
}

/// Central's `Any` holds proto bytes herald does not have: only the type URL
/// survives (`{"type_url":"storage.Notifier"}`), documented in the README.
fn any(out: &mut String, v: &Value) {
    match v.get("@type").and_then(Value::as_str) {
        Some(t) => {
            out.push_str("{\"type_url\":");
            write_string(out, t);
            out.push('}');
        }
        None => out.push_str("{}"),
    }
}

/// A field the schema does not know: snake_case names, values as they are.
fn unknown(out: &mut String, v: &Value) {
    match v {
        Value::Object(obj) => {
            out.push('{');
            for (i, (k, val)) in obj.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, &snake(k));
                out.push(':');
                unknown(out, val);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                unknown(out, item);
            }
            out.push(']');
        }
        _ => plain(out, v),
    }
}

/// Go's rendering of a JSON value: strings HTML-escaped, map keys sorted.
pub fn plain(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                plain(out, item);
            }
            out.push(']');
        }
        Value::Object(_) => map(out, v, &Kind::Scalar),
    }
}

/// Shrinks Go-JSON alert text to at most `max` bytes where it can, keeping
/// it valid JSON: deployment annotations and labels go first, then process
/// indicators and violations from the end, then the policy's free text;
/// as a last resort only the alert id and policy name and id remain.
pub fn shrink(json: &str, max: usize) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(json) else {
        return json.to_string();
    };
    let render = |v: &Value| {
        let mut s = String::new();
        // Keys keep their (already Go) order; strings are re-escaped as Go does.
        ordered(&mut s, v);
        s
    };
    let mut text = render(&v);
    // Whole fields go at once; list items one at a time from the end, each
    // subtracting its own rendered length (and comma), so the work is linear
    // in the alert's size, not quadratic in the number of items.
    for path in [
        &["Entity", "Deployment", "annotations"][..],
        &["Entity", "Deployment", "labels"],
    ] {
        if text.len() > max && remove(&mut v, path) {
            text = render(&v);
        }
    }
    for path in [&["process_violation", "processes"][..], &["violations"]] {
        let mut len = text.len();
        let mut popped = false;
        while len > max {
            let Some(freed) = pop(&mut v, path) else {
                break;
            };
            len -= freed;
            popped = true;
        }
        if popped {
            text = render(&v);
        }
    }
    if text.len() > max {
        let texts = ["description", "rationale", "remediation"];
        if texts
            .map(|k| remove(&mut v, &["policy", k]))
            .contains(&true)
        {
            text = render(&v);
        }
    }
    if text.len() > max {
        let mut min = serde_json::Map::new();
        min.insert("id".into(), v.get("id").cloned().unwrap_or(Value::Null));
        let mut policy = serde_json::Map::new();
        for k in ["id", "name"] {
            if let Some(x) = v.get("policy").and_then(|p| p.get(k)) {
                policy.insert(k.into(), x.clone());
            }
        }
        min.insert("policy".into(), Value::Object(policy));
        min.insert("truncated".into(), Value::Bool(true));
        text = render(&Value::Object(min));
    }
    text
}

/// Go's rendering of a struct: keys in the order given (struct order),
/// strings HTML-escaped.
pub fn ordered(out: &mut String, v: &Value) {
    match v {
        Value::Object(obj) => {
            out.push('{');
            for (i, (k, val)) in obj.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                ordered(out, val);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ordered(out, item);
            }
            out.push(']');
        }
        _ => plain(out, v),
    }
}

fn at<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, k| v.get_mut(*k))
}

/// Removes the field at `path` (the last segment from its parent object).
fn remove(v: &mut Value, path: &[&str]) -> bool {
    let (key, parent) = path.split_last().expect("non-empty path");
    at(v, parent)
        .and_then(Value::as_object_mut)
        .is_some_and(|o| o.shift_remove(*key).is_some())
}

/// Pops the last item of the list at `path`; returns how many bytes of the
/// rendering it took (its text and the comma before it).
fn pop(v: &mut Value, path: &[&str]) -> Option<usize> {
    let items = at(v, path).and_then(Value::as_array_mut)?;
    let last = items.pop()?;
    let mut s = String::new();
    ordered(&mut s, &last);
    Some(s.len() + usize::from(!items.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_fields_enums_timestamps_oneofs_maps() {
        let input = r#"{"id":"a1","policy":{"id":"p","name":"N <x>","lifecycleStages":["RUNTIME"],"severity":"HIGH_SEVERITY","enforcementActions":["KILL_POD_ENFORCEMENT"],"lastUpdated":"2024-03-11T09:12:44.120Z","SORTName":"N","SORTLifecycleStage":"RUNTIME","SORTEnforcement":true},"lifecycleStage":"RUNTIME","clusterId":"c","deployment":{"name":"d","labels":{"b":"2","a":"1"},"containers":[{"image":{"name":{"fullName":"x"},"idV2":"v2"}}]},"violations":[{"message":"m","keyValueAttrs":{"attrs":[{"key":"k","value":"v"}]},"type":"K8S_EVENT","time":"2024-05-01T12:00:00Z"},{"message":"plain"}],"time":"2024-05-01T12:03:17.451Z","state":"ATTEMPTED","unknownThing":{"fooBar":1}}"#;
        let expected = r#"{"id":"a1","policy":{"id":"p","name":"N \u003cx\u003e","lifecycle_stages":[2],"severity":3,"enforcement_actions":[3],"last_updated":{"seconds":1710148364,"nanos":120000000},"SORT_name":"N","SORT_lifecycleStage":"RUNTIME","SORT_enforcement":true},"lifecycle_stage":2,"cluster_id":"c","Entity":{"Deployment":{"name":"d","labels":{"a":"1","b":"2"},"containers":[{"image":{"name":{"full_name":"x"},"id_v2":"v2"}}]}},"violations":[{"message":"m","MessageAttributes":{"KeyValueAttrs":{"attrs":[{"key":"k","value":"v"}]}},"type":1,"time":{"seconds":1714564800}},{"message":"plain","MessageAttributes":null}],"time":{"seconds":1714564997,"nanos":451000000},"state":3,"unknown_thing":{"foo_bar":1}}"#;
        assert_eq!(alert(input).unwrap(), expected);
    }

    #[test]
    fn unset_oneof_is_null_in_place() {
        assert_eq!(
            alert(r#"{"id":"x","policy":{}}"#).unwrap(),
            r#"{"id":"x","policy":{},"Entity":null}"#
        );
        assert_eq!(
            alert(r#"{"id":"x","violations":[{"message":"m","type":"NETWORK_FLOW"}]}"#).unwrap(),
            r#"{"id":"x","Entity":null,"violations":[{"message":"m","MessageAttributes":null,"type":2}]}"#
        );
        assert_eq!(
            alert(r#"{"id":"x","resource":{"resourceType":"SECRETS","name":"s"},"violations":[{"message":"m","networkFlowInfo":{"protocol":"L4_PROTOCOL_ANY","source":{"entityType":"INTERNET","port":443}}}]}"#).unwrap(),
            r#"{"id":"x","Entity":{"Resource":{"resource_type":1,"name":"s"}},"violations":[{"message":"m","MessageAttributes":{"NetworkFlowInfo":{"protocol":-1,"source":{"entity_type":2,"port":443}}}}]}"#
        );
    }

    #[test]
    fn go_struct_order_whatever_the_input_order() {
        assert_eq!(
            alert(r#"{"violations":[{"type":"K8S_EVENT","keyValueAttrs":{"attrs":[]},"message":"m"}],"extraNew":1,"id":"x"}"#).unwrap(),
            r#"{"id":"x","Entity":null,"violations":[{"message":"m","MessageAttributes":{"KeyValueAttrs":{"attrs":[]}},"type":1}],"extra_new":1}"#
        );
    }

    #[test]
    fn audit_enums_maps_and_any() {
        let input = r#"{"time":"2024-05-01T12:10:02.118356Z","status":"REQUEST_SUCCEEDED","user":{"username":"admin","permissions":{"resourceToAccess":{"Integration":"READ_WRITE_ACCESS","Alert":"READ_ACCESS"}},"roles":[{"name":"Admin"}]},"request":{"endpoint":"/v1/notifiers","method":"POST","payload":{"@type":"storage.Notifier","name":"slack"},"sourceHeaders":{"xForwardedFor":"10.0.3.7"},"sourceIp":"10.0.3.7"},"method":"UI","interaction":"CREATE"}"#;
        let expected = r#"{"time":{"seconds":1714565402,"nanos":118356000},"status":1,"user":{"username":"admin","permissions":{"resource_to_access":{"Alert":1,"Integration":2}},"roles":[{"name":"Admin"}]},"request":{"endpoint":"/v1/notifiers","method":"POST","payload":{"type_url":"storage.Notifier"},"source_headers":{"x_forwarded_for":"10.0.3.7"},"source_ip":"10.0.3.7"},"method":2,"interaction":1}"#;
        assert_eq!(audit(input).unwrap(), expected);
    }

    /// The one-pass converter and the general one agree.
    #[test]
    fn fast_path_matches_the_general_converter() {
        for name in ["alert-deployment-runtime.json", "alert-resource.json"] {
            let text = std::fs::read_to_string(format!(
                "{}/tests/fixtures/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            let minified = crate::model::json::minify(&text);
            let mut fast = super::super::stream::Stream::new(&minified);
            assert!(
                fast.message(&schema::ALERT).is_some(),
                "{name} takes the fast path"
            );
            let v: Value = serde_json::from_str(&minified).unwrap();
            let mut general = String::new();
            message(&mut general, &v, &schema::ALERT);
            assert_eq!(fast.out, general, "{name}");
        }
        let audit = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/audit-notifier-create.json"
        ))
        .unwrap();
        let v: Value = serde_json::from_str(&audit).unwrap();
        let inner = serde_json::to_string(&v["audit"]).unwrap();
        let mut fast = super::super::stream::Stream::new(&inner);
        assert!(fast.message(&schema::AUDIT_MESSAGE).is_some());
        let mut general = String::new();
        message(&mut general, &v["audit"], &schema::AUDIT_MESSAGE);
        assert_eq!(fast.out, general);
    }

    /// Even past decode's bound, no walker recurses without limit: 200,000
    /// levels (in a known field, an unknown one, a map value) are an error,
    /// not a stack overflow.
    #[test]
    fn nesting_beyond_any_limit_is_an_error_not_a_crash() {
        let n = 200_000;
        let deep = format!("{}{}", "[".repeat(n), "]".repeat(n));
        for raw in [
            format!(r#"{{"id":"x","policy":{{}},"deep":{deep}}}"#),
            format!(r#"{{"id":"x","violations":{deep}}}"#),
            format!(r#"{{"id":"x","deployment":{{"labels":{{"k":{deep}}}}}}}"#),
        ] {
            let err = alert(&raw).unwrap_err();
            assert!(err.contains("recursion limit exceeded"), "{err}");
            assert_eq!(shrink(&raw, 10), raw, "unparseable input is left alone");
        }
        // At the limit decode allows, both converters still work.
        let ok = format!(
            r#"{{"id":"x","policy":{{}},"deep":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(alert(&ok).is_ok());
    }

    #[test]
    fn shrink_keeps_valid_json_and_drops_bulk_first() {
        let big = "x".repeat(500);
        let json = format!(
            r#"{{"id":"a","policy":{{"id":"p","name":"n","description":"{big}"}},"Entity":{{"Deployment":{{"name":"d","annotations":{{"k":"{big}"}}}}}}}}"#
        );
        let s = shrink(&json, 700);
        assert_eq!(
            s,
            format!(
                r#"{{"id":"a","policy":{{"id":"p","name":"n","description":"{big}"}},"Entity":{{"Deployment":{{"name":"d"}}}}}}"#
            )
        );
        let s = shrink(&json, 100);
        assert_eq!(
            s,
            r#"{"id":"a","policy":{"id":"p","name":"n"},"Entity":{"Deployment":{"name":"d"}}}"#
        );
        assert_eq!(
            shrink(&json, 10),
            r#"{"id":"a","policy":{"id":"p","name":"n"},"truncated":true}"#
        );
    }
}
