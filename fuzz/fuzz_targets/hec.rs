//! Decode, then the Splunk HEC event envelope (`splunk::hec_event`) at
//! Central's default `truncate` (10,000: usually the fast path) and at small
//! ones, so the general path (policy text blanked, `prune_alert`, size
//! check) runs too; then the Sumo Logic body (pruned to 10,000). Errors
//! (over the limit, audit to Sumo Logic) are fine; panics are not, and an
//! envelope herald accepts never exceeds `truncate`.
#![no_main]

use herald::formats::{splunk, sumologic};
use herald::model::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = decode(data, &herald::model::Limits::default()) else {
        return;
    };
    for truncate in [10_000, 1_000, 300, 0] {
        let body = splunk::hec_event(&event, truncate, "stackrox-alert", "stackrox-audit-message");
        if let Ok(body) = body {
            assert!(
                body.len() <= truncate,
                "HEC envelope of {} bytes over truncate {truncate}",
                body.len()
            );
        }
    }
    // No sourcetype: the envelope leaves it out.
    let _ = splunk::hec_event(&event, 10_000, "", "");
    let _ = sumologic::sumo_body(&event);
});
