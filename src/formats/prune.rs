//! Central's `PruneAlert(alert, maxSize)` (central-compat §0.4), on the protojson value:
//! used by Splunk (`truncate`) and Sumo Logic (10000).

use serde_json::{Map, Value};

fn compact_len(v: &Value) -> usize {
    serde_json::to_string(v).map(|s| s.len()).unwrap_or(0)
}

/// Removes entries of the map at `path` (largest key+value first) while
/// `size >= budget`, subtracting each pair's key and value length. The
/// entries to drop are chosen first and removed in one pass, so 20,000
/// annotations cost no more per entry than 20.
fn prune_map(alert: &mut Value, path: &[&str], size: &mut usize, budget: usize) {
    let Some(map) = pointer_mut(alert, path).and_then(Value::as_object_mut) else {
        return;
    };
    let mut pairs: Vec<(&String, usize)> = map
        .iter()
        .map(|(k, v)| (k, k.len() + v.as_str().map_or(0, str::len)))
        .collect();
    // Largest first; ties keep map order (stable sort).
    pairs.sort_by_key(|p| std::cmp::Reverse(p.1));
    let mut drop = std::collections::HashSet::new();
    for (k, len) in pairs {
        if *size < budget {
            break;
        }
        drop.insert(k.clone());
        *size = size.saturating_sub(len);
    }
    if !drop.is_empty() {
        map.retain(|k, _| !drop.contains(k));
    }
    if map.is_empty() {
        remove_at(alert, path);
    }
}

/// Drops elements of the array at `path` from the end while `size >= budget`.
fn prune_tail(alert: &mut Value, path: &[&str], size: &mut usize, budget: usize) {
    let Some(items) = pointer_mut(alert, path).and_then(Value::as_array_mut) else {
        return;
    };
    while *size >= budget {
        let Some(last) = items.pop() else { break };
        *size = size.saturating_sub(compact_len(&last));
    }
    if items.is_empty() {
        remove_at(alert, path);
    }
}

fn pointer_mut<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, key| v.get_mut(*key))
}

/// protojson omits empty values, so an emptied field goes away entirely.
fn remove_at(v: &mut Value, path: &[&str]) {
    let (last, parents) = path.split_last().expect("non-empty path");
    if let Some(parent) = pointer_mut(v, parents).and_then(Value::as_object_mut) {
        parent.shift_remove(*last);
    }
}

/// Prunes a protojson alert (an object) to about `max_size` bytes, as Central
/// does; the bookkeeping is approximate (no re-measure), like Central's.
pub fn prune_alert(alert: &mut Value, max_size: usize) {
    let budget = max_size.saturating_sub(50);
    let mut size = compact_len(alert);
    if size < budget {
        return;
    }
    prune_map(alert, &["deployment", "annotations"], &mut size, budget);
    prune_map(alert, &["deployment", "labels"], &mut size, budget);
    if size >= budget && alert.get("processViolation").is_some() {
        prune_tail(alert, &["processViolation", "processes"], &mut size, budget);
    }
    if size >= budget {
        prune_tail(alert, &["violations"], &mut size, budget);
    }
}

/// Splunk blanks the policy's free text before pruning.
pub fn blank_policy_text(alert: &mut Value) {
    if let Some(policy) = alert.get_mut("policy").and_then(Value::as_object_mut) {
        for key in ["description", "rationale", "remediation", "exclusions"] {
            policy.shift_remove(key);
        }
    }
}

/// `{"@type": "<type>", …fields}`: protojson's `Any` form, as Central wraps
/// events for Splunk (bare type names, no `type.googleapis.com/`).
pub fn with_type(type_name: &str, fields: &Value) -> Value {
    let mut out = Map::new();
    out.insert("@type".into(), Value::String(type_name.into()));
    if let Some(obj) = fields.as_object() {
        for (k, v) in obj {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn small_alerts_are_untouched() {
        let mut a = json!({"id": "a", "deployment": {"annotations": {"k": "v"}}});
        let before = a.clone();
        prune_alert(&mut a, 10_000);
        assert_eq!(a, before);
    }

    #[test]
    fn prunes_annotations_largest_first_then_labels_processes_violations() {
        let big = "x".repeat(300);
        let mut a = json!({
            "id": "a",
            "deployment": {
                "annotations": {"small": "1", "big": big, "mid": "y".repeat(100)},
                "labels": {"app": "z".repeat(200)}
            },
            "violations": [{"message": "v1"}, {"message": "v2"}],
            "processViolation": {"message": "p", "processes": [{"id": "p1"}, {"id": "p2"}]}
        });
        let size = compact_len(&a);
        // Room for everything but the big annotation.
        prune_alert(&mut a, size - 300 + 50);
        assert_eq!(
            a["deployment"]["annotations"],
            json!({"small": "1", "mid": "y".repeat(100)})
        );
        assert!(a["deployment"]["labels"].is_object());

        // Far too small: everything prunable goes, emptied fields vanish.
        prune_alert(&mut a, 100);
        assert!(a["deployment"].get("annotations").is_none());
        assert!(a["deployment"].get("labels").is_none());
        assert!(a["processViolation"].get("processes").is_none());
        assert!(a.get("violations").is_none());
        assert_eq!(a["processViolation"]["message"], "p");
    }

    #[test]
    fn typed_wrapper_puts_type_first() {
        let v = with_type("storage.Alert", &json!({"id": "a", "z": 1}));
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"@type":"storage.Alert","id":"a","z":1}"#
        );
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;

    /// Removing keys keeps the others in order (protojson order is wire data).
    #[test]
    fn blanking_and_pruning_keep_key_order() {
        let mut a: Value = serde_json::from_str(
            r#"{"policy":{"id":"p","description":"d","name":"n","rationale":"r","severity":"LOW_SEVERITY","remediation":"m"}}"#,
        )
        .unwrap();
        blank_policy_text(&mut a);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"policy":{"id":"p","name":"n","severity":"LOW_SEVERITY"}}"#
        );
        let mut b: Value = serde_json::from_str(&format!(
            r#"{{"deployment":{{"annotations":{{"a":"1","big":"{}","z":"2"}}}}}}"#,
            "x".repeat(300)
        ))
        .unwrap();
        prune_alert(&mut b, 200);
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"deployment":{"annotations":{"a":"1","z":"2"}}}"#
        );
    }
}
