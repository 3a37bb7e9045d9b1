//! Splunk HEC events (central-compat §2.2).

use serde_json::{Map, Value};

use super::prune::{blank_policy_text, prune_alert, with_type};
use crate::model::Event;

/// One HEC event envelope, compact protojson with `event`, `source`,
/// `sourcetype` in that order (no `time`, `host` or `index`: Splunk assigns
/// them). Alerts lose their policy text and are pruned to `truncate`; then
/// an envelope longer than `truncate` is refused, as Central refuses it.
pub fn hec_event(
    event: &Event,
    truncate: usize,
    alert_type: &str,
    audit_type: &str,
) -> Result<Vec<u8>, String> {
    if let Event::Alert(a) = event {
        if let Some(body) = hec_alert_fast(a.raw.get(), truncate, alert_type) {
            return check_size(body, truncate);
        }
    }
    let (typed, sourcetype) = match event {
        Event::Alert(a) => {
            let mut v: Value = serde_json::from_str(a.raw.get()).map_err(|e| e.to_string())?;
            blank_policy_text(&mut v);
            prune_alert(&mut v, truncate);
            (with_type("storage.Alert", &v), alert_type)
        }
        Event::Audit(a) => {
            let v: Value = serde_json::from_str(a.raw.get()).map_err(|e| e.to_string())?;
            (with_type("v1.Audit.Message", &v), audit_type)
        }
    };
    let mut envelope = Map::new();
    envelope.insert("event".into(), typed);
    envelope.insert("source".into(), Value::String("stackrox".into()));
    if !sourcetype.is_empty() {
        envelope.insert("sourcetype".into(), Value::String(sourcetype.into()));
    }
    let body = serde_json::to_vec(&Value::Object(envelope)).map_err(|e| e.to_string())?;
    check_size(body, truncate)
}

fn check_size(body: Vec<u8>, truncate: usize) -> Result<Vec<u8>, String> {
    if body.len() > truncate {
        return Err(format!(
            "Splunk HEC truncate data limit ({truncate} bytes) exceeded: {}",
            body.len()
        ));
    }
    Ok(body)
}

/// Object members in order, borrowed from minified JSON.
fn members(raw: &str) -> Option<indexmap::IndexMap<&str, &serde_json::value::RawValue>> {
    serde_json::from_str(raw).ok()
}

fn write_members<'a>(
    out: &mut String,
    members: impl Iterator<Item = (&'a str, &'a serde_json::value::RawValue)>,
) {
    for (i, (k, v)) in members.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(k);
        out.push_str("\":");
        out.push_str(v.get());
    }
}

/// The common case without re-serialising: policy text dropped by copying
/// the other members as received; when that fits the pruning budget,
/// Central's pruning would change nothing. `None`: take the general path.
fn hec_alert_fast(raw: &str, truncate: usize, sourcetype: &str) -> Option<Vec<u8>> {
    let top = members(raw)?;
    let mut out = String::with_capacity(raw.len() + 96);
    out.push_str("{\"event\":{\"@type\":\"storage.Alert\"");
    for (k, v) in &top {
        out.push(',');
        out.push('"');
        out.push_str(k);
        out.push_str("\":");
        if *k == "policy" {
            let policy = members(v.get())?;
            out.push('{');
            let kept = policy
                .iter()
                .filter(|(k, _)| {
                    !matches!(
                        **k,
                        "description" | "rationale" | "remediation" | "exclusions"
                    )
                })
                .map(|(k, v)| (*k, *v));
            write_members(&mut out, kept);
            out.push('}');
        } else {
            out.push_str(v.get());
        }
    }
    out.push('}');
    // The alert alone, as prune_alert measures it: everything from `{"@type"`
    // minus the type member, plus the braces.
    let alert_len = out.len() - "{\"event\":".len() - ",\"@type\":\"storage.Alert\"".len();
    if alert_len >= truncate.saturating_sub(50) || keys_need_escaping(&top) {
        return None;
    }
    out.push_str(",\"source\":\"stackrox\"");
    if !sourcetype.is_empty() {
        out.push_str(",\"sourcetype\":");
        out.push_str(&serde_json::to_string(sourcetype).ok()?);
    }
    out.push('}');
    Some(out.into_bytes())
}

fn keys_need_escaping(m: &indexmap::IndexMap<&str, &serde_json::value::RawValue>) -> bool {
    m.keys().any(|k| k.contains(['"', '\\']))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_event as ev;

    #[test]
    fn envelope_blanks_policy_text_and_keeps_order() {
        let e = ev(
            r#"{"id":"a","policy":{"name":"P","description":"d","rationale":"r","remediation":"m","exclusions":[{"name":"x"}],"severity":"HIGH_SEVERITY"},"clusterName":"c <&>"}"#,
        );
        let body = String::from_utf8(
            hec_event(&e, 10_000, "stackrox-alert", "stackrox-audit-message").unwrap(),
        )
        .unwrap();
        assert_eq!(
            body,
            r#"{"event":{"@type":"storage.Alert","id":"a","policy":{"name":"P","severity":"HIGH_SEVERITY"},"clusterName":"c <&>"},"source":"stackrox","sourcetype":"stackrox-alert"}"#
        );
    }

    #[test]
    fn audit_and_empty_sourcetype() {
        let e = ev(r#"{"audit":{"status":"AUTH_FAILED"}}"#);
        let body = String::from_utf8(hec_event(&e, 10_000, "a", "").unwrap()).unwrap();
        assert_eq!(
            body,
            r#"{"event":{"@type":"v1.Audit.Message","status":"AUTH_FAILED"},"source":"stackrox"}"#
        );
    }

    #[test]
    fn oversize_is_refused_with_centrals_message() {
        let e = ev(&format!(
            r#"{{"id":"a","policy":{{"name":"{}"}}}}"#,
            "n".repeat(500)
        ));
        let err = hec_event(&e, 300, "t", "t").unwrap_err();
        assert!(
            err.starts_with("Splunk HEC truncate data limit (300 bytes) exceeded: "),
            "{err}"
        );
    }
}
