//! What `/readyz` reports: connected to the broker, partitions assigned,
//! the ledger working.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What `/readyz` reports: connected to the broker with partitions assigned.
#[derive(Default)]
pub struct Health {
    pub assigned_partitions: AtomicUsize,
    pub brokers_down: AtomicBool,
    pub store_failed: AtomicBool,
}

impl Health {
    pub fn ready(&self) -> Result<(), &'static str> {
        if self.store_failed.load(Ordering::Relaxed) {
            return Err("ledger store failed");
        }
        if self.brokers_down.load(Ordering::Relaxed) {
            return Err("all brokers are down");
        }
        if self.assigned_partitions.load(Ordering::Relaxed) == 0 {
            return Err("no partitions assigned yet");
        }
        Ok(())
    }
}
