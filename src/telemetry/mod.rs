//! What herald tells its operators: metrics, health and logs. Imports
//! nothing of herald's, so every layer may report through it.

pub mod health;
pub mod logs;
pub mod metrics;

pub use health::Health;
pub use metrics::Metrics;
