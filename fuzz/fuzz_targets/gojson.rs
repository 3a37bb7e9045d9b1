//! Decode, then the protojson → Go `encoding/json` conversion Central embeds
//! in CEF (`gojson::alert` / `gojson::audit`), then `gojson::shrink` (CEF's
//! `max_record_size`) at sizes from "fits" down to nothing. Errors are fine;
//! panics are not.
#![no_main]

use herald::formats::gojson;
use herald::model::{decode, Event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = decode(data, &herald::model::Limits::default()) else {
        return;
    };
    match &event {
        Event::Alert(a) => {
            let Ok(json) = gojson::alert(a.raw.get()) else {
                return;
            };
            for max in [json.len(), json.len() / 2, 256, 0] {
                let _ = gojson::shrink(&json, max);
            }
        }
        Event::Audit(a) => {
            let _ = gojson::audit(a.raw.get());
        }
    }
});
