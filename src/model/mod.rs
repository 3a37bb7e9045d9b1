//! RHACS event model: `storage.Alert` and `v1.Audit.Message` in protojson naming
//! (central-compat §1), decoded from one Kafka message value.
//!
//! Each event keeps the raw JSON it arrived with (minified, key order and unknown
//! fields intact) next to the typed fields herald reads, so what herald forwards
//! is what Central produced.

mod decode;
pub mod json;
mod types;

pub use decode::{decode, InvalidMessage, InvalidReason, Limits, MAX_DEPTH, MAX_MESSAGE_BYTES};
#[cfg(test)]
pub use decode::{test_alert, test_event};
pub use types::*;

use serde_json::value::RawValue;

/// One decoded message value.
#[derive(Debug, Clone)]
pub enum Event {
    Alert(Alert),
    Audit(Audit),
}

/// An alert: typed fields plus the minified protojson as received.
#[derive(Debug, Clone)]
pub struct Alert {
    pub raw: Box<RawValue>,
    pub fields: Box<AlertFields>,
}

/// An audit message: typed fields plus the minified protojson as received.
#[derive(Debug, Clone)]
pub struct Audit {
    pub raw: Box<RawValue>,
    pub fields: Box<AuditFields>,
}

impl Event {
    /// Short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Alert(_) => "alert",
            Event::Audit(_) => "audit",
        }
    }

    /// The alert id, or `None` for audit events.
    pub fn alert_id(&self) -> Option<&str> {
        match self {
            Event::Alert(a) => Some(&a.fields.id),
            Event::Audit(_) => None,
        }
    }
}
