//! Decode, then the syslog CEF record (`cef::alert_record` /
//! `cef::audit_record`) in both header orders (`cef` and `legacy`), with and
//! without escaping, namespace labels and `max_record_size` shrinking, then
//! every framing. Errors (an alert without `time`, say) are fine; panics are
//! not.
#![no_main]

use std::collections::BTreeMap;

use herald::formats::cef::{self, Framing, HeaderOrder, Settings};
use herald::model::{decode, Event};
use libfuzzer_sys::fuzz_target;

fn settings(
    order: HeaderOrder,
    escape: bool,
    max_record_size: usize,
    framing: Framing,
    max_message_size: usize,
) -> Settings {
    Settings {
        facility: 3,
        hostname: "central".into(),
        procid: "1".into(),
        device_version: "4.7.0".into(),
        order,
        extra_fields: vec![
            ("env".into(), "prod".into()),
            ("note".into(), "a=b|c\\d\n".into()),
        ],
        escape,
        max_message_size,
        framing,
        max_record_size,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(event) = decode(data, &herald::model::Limits::default()) else {
        return;
    };
    let labels = BTreeMap::from([
        ("team".to_string(), "payments".to_string()),
        ("a&b".to_string(), "<x>".to_string()),
    ]);
    for order in [HeaderOrder::Cef, HeaderOrder::Legacy] {
        for (escape, max_record_size, framing, max_message_size, ns_labels) in [
            (false, 0, Framing::OctetCounting, 0, None),
            (true, 512, Framing::OctetCounting, 100, Some(&labels)),
            (false, 2048, Framing::Newline, 0, Some(&labels)),
            (true, 0, Framing::Datagram, 1024, None),
        ] {
            let s = settings(order, escape, max_record_size, framing, max_message_size);
            let record = match &event {
                Event::Alert(a) => cef::alert_record(a, &s, ns_labels),
                Event::Audit(a) => cef::audit_record(a, &s),
            };
            if let Ok(record) = record {
                let _ = cef::frames(&record, &s);
            }
        }
    }
});
