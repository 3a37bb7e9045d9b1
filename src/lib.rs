//! herald: delivers RHACS (StackRox) policy-violation alerts and audit events
//! from Kafka to where security teams work, once and without loss.
//!
//! The flow, left to right: `source` (Kafka) → `model` (decode) → `routing` →
//! `delivery` (per-destination pools) → `notifiers` (format with `formats`,
//! then send). Offsets are committed as deliveries become final.

pub mod app;
pub mod central;
pub mod cli;
pub mod config;
pub mod deadletter;
pub mod delivery;
pub mod destinations;
pub mod files;
pub mod formats;
pub mod http;
pub mod ledger;
pub mod model;
pub mod notifiers;
pub mod routing;
pub mod source;
pub mod telemetry;
pub mod tls;
