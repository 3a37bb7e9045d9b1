//! Notify-once: given what the ledger holds, what to do with an event.

use sha2::{Digest, Sha256};

use super::Entry;
use crate::model::{AlertState, Event, LifecycleStage};

/// The ledger key of an event: the alert id, or a hash of an audit message's
/// content (so a redelivered audit message is recognised).
pub fn key_of(event: &Event) -> String {
    match event {
        Event::Alert(a) => a.fields.id.clone(),
        Event::Audit(a) => {
            let digest = Sha256::digest(a.raw.get().as_bytes());
            let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
            format!("audit:{hex}")
        }
    }
}

/// The `Idempotency-Key` a receiver can de-duplicate by: key and state.
/// Always a valid header value: bytes other than visible ASCII (and `%`)
/// are percent-encoded, so an alert id from anywhere still makes a key.
pub fn idempotency_key(event: &Event, key: &str) -> String {
    let raw = match event {
        Event::Alert(a) => format!("{key}:{}", a.fields.state.as_str()),
        Event::Audit(_) => key.to_string(),
    };
    if raw.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'%') {
        return raw;
    }
    let mut out = String::with_capacity(raw.len() * 3);
    for b in raw.bytes() {
        if (0x21..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How far ahead of herald's clock an alert's time may be and still count.
pub const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Send, then record this entry.
    Deliver(Entry),
    /// Final without sending; refresh the entry's last-seen time.
    Skip(&'static str, Option<Entry>),
    /// An earlier delivery of the same key is parked: wait behind it.
    ParkBehind,
}

/// Decides for one (event, destination). `parked_before` tells whether an
/// earlier delivery of the same key is parked there.
pub fn plan(
    event: &Event,
    entry: Option<Entry>,
    parked_before: bool,
    renotify_runtime: bool,
    now_ms: i64,
) -> Plan {
    if parked_before {
        return Plan::ParkBehind;
    }
    let touch = entry.map(|e| Entry {
        last_seen_ms: now_ms,
        ..e
    });
    let a = match event {
        Event::Audit(_) => {
            return match entry {
                Some(_) => Plan::Skip("audit message already delivered", touch),
                None => Plan::Deliver(Entry {
                    state: AlertState::Active,
                    delivered_ms: now_ms,
                    last_seen_ms: now_ms,
                    newest_violation_ms: 0,
                }),
            }
        }
        Event::Alert(a) => &a.fields,
    };
    let violation_ms = a.time.map(|t| t.0.timestamp_millis()).unwrap_or(0);
    // A violation time beyond clock skew is not believed: it is not "newer"
    // than what was notified, and what is recorded is at most now plus the
    // skew, so one future-dated message neither re-notifies on every
    // redelivery nor hides the genuine updates after it.
    let latest_believable = now_ms.saturating_add(CLOCK_SKEW_MS);
    let from_the_future = violation_ms > latest_believable;
    let deliver = |state| {
        Plan::Deliver(Entry {
            state,
            delivered_ms: now_ms,
            last_seen_ms: now_ms,
            newest_violation_ms: violation_ms
                .min(latest_believable)
                .max(entry.map_or(0, |e| e.newest_violation_ms)),
        })
    };
    match (a.state, entry) {
        (AlertState::Resolved, None) => {
            Plan::Skip("resolved, but this destination was never notified", None)
        }
        (AlertState::Resolved, Some(e)) if e.state == AlertState::Resolved => {
            Plan::Skip("resolution already delivered", touch)
        }
        (AlertState::Resolved, Some(_)) => deliver(AlertState::Resolved),
        (_, None) => deliver(a.state),
        (_, Some(e)) if e.state == AlertState::Resolved => {
            Plan::Skip("alert already resolved here", touch)
        }
        (_, Some(e)) => {
            if renotify_runtime
                && a.lifecycle_stage == LifecycleStage::Runtime
                && !from_the_future
                && violation_ms > e.newest_violation_ms
            {
                deliver(a.state)
            } else {
                Plan::Skip("already notified", touch)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_event as ev;

    const T1: &str = "2024-05-01T12:00:00Z";
    /// An hour after T1: herald's clock in these tests.
    const NOW: i64 = 1_714_568_400_000;
    const T2: &str = "2024-05-01T12:05:00Z";

    fn alert(state: &str, time: &str) -> Event {
        ev(&format!(
            r#"{{"id":"a1","policy":{{}},"lifecycleStage":"RUNTIME","state":"{state}","time":"{time}"}}"#
        ))
    }

    fn delivered(p: Plan) -> Entry {
        match p {
            Plan::Deliver(e) => e,
            other => panic!("expected Deliver, got {other:?}"),
        }
    }

    #[test]
    fn first_sighting_is_delivered_once() {
        let e = delivered(plan(&alert("ACTIVE", T1), None, false, false, NOW + 100));
        assert_eq!(e.state, AlertState::Active);
        assert_eq!(e.newest_violation_ms, 1_714_564_800_000);
        assert_eq!(
            plan(&alert("ACTIVE", T2), Some(e), false, false, NOW + 200),
            Plan::Skip(
                "already notified",
                Some(Entry {
                    last_seen_ms: NOW + 200,
                    ..e
                })
            )
        );
    }

    #[test]
    fn runtime_updates_renotify_only_when_asked_and_newer() {
        let e = delivered(plan(&alert("ACTIVE", T1), None, false, true, NOW + 100));
        assert!(matches!(
            plan(&alert("ACTIVE", T1), Some(e), false, true, NOW + 200),
            Plan::Skip(..)
        ));
        let e2 = delivered(plan(&alert("ACTIVE", T2), Some(e), false, true, NOW + 200));
        assert_eq!(e2.newest_violation_ms, 1_714_565_100_000);
        let deploy = ev(r#"{"id":"a1","policy":{},"time":"2024-05-01T12:05:00Z"}"#);
        assert!(
            matches!(
                plan(&deploy, Some(e), false, true, NOW + 200),
                Plan::Skip(..)
            ),
            "DEPLOY never renotifies"
        );
    }

    #[test]
    fn a_time_in_the_future_is_neither_new_for_ever_nor_hides_real_updates() {
        let t1 = 1_714_564_800_000; // T1
        let first = delivered(plan(&alert("ACTIVE", T1), None, false, true, t1));
        // Year 2100: not believed as an update, and never renotified.
        let future = alert("ACTIVE", "2100-01-01T00:00:00Z");
        assert!(matches!(
            plan(&future, Some(first), false, true, t1 + 1),
            Plan::Skip(..)
        ));
        assert!(matches!(
            plan(&future, Some(first), false, true, t1 + 2),
            Plan::Skip(..)
        ));
        // Delivered first, it records at most now plus the skew, so the genuine
        // update ten minutes later is still newer.
        let e = delivered(plan(&future, None, false, true, t1));
        assert_eq!(e.newest_violation_ms, t1 + CLOCK_SKEW_MS);
        let later = alert("ACTIVE", "2024-05-01T12:10:00Z");
        assert!(matches!(
            plan(&later, Some(e), false, true, t1 + 600_000),
            Plan::Deliver(_)
        ));
    }

    #[test]
    fn resolved_only_after_a_notification_and_once() {
        let r = alert("RESOLVED", T1);
        assert!(matches!(plan(&r, None, false, false, 1), Plan::Skip(..)));
        let active = delivered(plan(&alert("ATTEMPTED", T1), None, false, false, 1));
        let resolved = delivered(plan(&r, Some(active), false, false, 2));
        assert_eq!(resolved.state, AlertState::Resolved);
        assert!(matches!(
            plan(&r, Some(resolved), false, false, 3),
            Plan::Skip(..)
        ));
        assert!(matches!(
            plan(&alert("ACTIVE", T2), Some(resolved), false, true, 3),
            Plan::Skip(..)
        ));
    }

    #[test]
    fn waits_behind_a_parked_delivery() {
        assert_eq!(
            plan(&alert("RESOLVED", T1), None, true, false, 1),
            Plan::ParkBehind
        );
    }

    #[test]
    fn audit_keys_are_stable_content_hashes() {
        let a = ev(r#"{"audit":{"status":"REQUEST_SUCCEEDED","time":"2024-05-01T12:00:00Z"}}"#);
        let pretty = ev("{\"audit\": {\n \"status\": \"REQUEST_SUCCEEDED\",\n \"time\": \"2024-05-01T12:00:00Z\"}}");
        let b = ev(r#"{"audit":{"status":"AUTH_FAILED","time":"2024-05-01T12:00:00Z"}}"#);
        assert_eq!(key_of(&a), key_of(&pretty));
        assert_ne!(key_of(&a), key_of(&b));
        assert!(key_of(&a).starts_with("audit:") && key_of(&a).len() == 38);
        let e = delivered(plan(&a, None, false, false, 1));
        assert!(matches!(
            plan(&pretty, Some(e), false, false, 2),
            Plan::Skip(..)
        ));
        assert_eq!(idempotency_key(&alert("RESOLVED", T1), "a1"), "a1:RESOLVED");
        let odd = ev(r#"{"id":"é 1%\r\n","policy":{}}"#);
        assert_eq!(key_of(&odd), "é 1%\r\n");
        let k = idempotency_key(&odd, &key_of(&odd));
        assert_eq!(k, "%C3%A9%201%25%0D%0A:ACTIVE");
        assert!(reqwest::header::HeaderValue::from_str(&k).is_ok());
    }
}
