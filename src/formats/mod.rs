//! Pure formatters: an event and a destination's settings in, bytes out.
//! Each is golden-tested against the wire rules of `spec/rhacs-notifiers.md`.

pub mod cef;
pub mod chat;
pub mod email;
pub mod gojson;
pub mod prune;
pub mod splunk;
pub mod teams;
pub mod text;
pub mod webhook;
