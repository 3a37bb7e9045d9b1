//! Pure formatters: an event and a destination's settings in, bytes out.
//! Each is golden-tested against the wire rules of `docs/central-compat.md`.

pub mod cef;
pub mod email;
pub mod gojson;
pub mod jira;
pub mod pagerduty;
pub mod prune;
pub mod scc;
pub mod securityhub;
pub mod sentinel;
pub mod slack;
pub mod splunk;
pub mod sumologic;
pub mod teams;
pub mod text;
pub mod webhook;
