//! `herald::model::decode` on arbitrary bytes (1 MiB limit, as a Kafka
//! message value): every input is an event or an `InvalidMessage`, never a
//! panic. An event must also decode again, unchanged, from the envelope
//! `{"alert": …}` / `{"audit": …}` around the raw JSON herald kept: the
//! minified text is valid JSON and minifying is idempotent.
#![no_main]

use herald::model::{decode, Event};
use libfuzzer_sys::fuzz_target;

const LIMIT: &herald::model::Limits = &herald::model::Limits {
    max_bytes: 1 << 20,
    // One below the most, so the envelope below fits.
    max_depth: herald::model::MAX_DEPTH - 1,
};

fuzz_target!(|data: &[u8]| {
    let event = match decode(data, LIMIT) {
        Ok(event) => event,
        Err(e) => {
            // The detail must render (it is logged and dead-lettered).
            let _ = e.to_string();
            return;
        }
    };
    let (key, raw) = match &event {
        Event::Alert(a) => ("alert", a.raw.get()),
        Event::Audit(a) => ("audit", a.raw.get()),
    };
    let envelope = format!("{{\"{key}\":{raw}}}");
    match decode(
        envelope.as_bytes(),
        &herald::model::Limits {
            max_bytes: usize::MAX,
            max_depth: herald::model::MAX_DEPTH,
        },
    ) {
        Ok(again) => {
            assert_eq!(
                again.kind(),
                event.kind(),
                "event kind changed on re-decode"
            );
            let again_raw = match &again {
                Event::Alert(a) => a.raw.get(),
                Event::Audit(a) => a.raw.get(),
            };
            assert_eq!(again_raw, raw, "raw JSON changed on re-decode");
            assert_eq!(
                again.alert_id(),
                event.alert_id(),
                "alert id changed on re-decode"
            );
        }
        Err(e) => panic!("a decoded {key} does not decode again from its envelope: {e}"),
    }
});
