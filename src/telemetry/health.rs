//! What `/readyz` reports: connected to the broker, partitions assigned,
//! the ledger working.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What `/readyz` reports: connected to the broker with partitions assigned.
#[derive(Default)]
pub struct Health {
    pub assigned_partitions: AtomicUsize,
    pub brokers_down: AtomicBool,
    pub store_failed: AtomicBool,
    /// The consumer's connection to its group coordinator is not up (from
    /// librdkafka's statistics: the logical `GroupCoordinator` broker).
    pub coordinator_down: AtomicBool,
    /// Since when the consumer has not been a steady member of its group
    /// (from librdkafka's statistics); `None` while it is.
    group_unjoined_since: Mutex<Option<Instant>>,
}

impl Health {
    /// Records whether the consumer is a steady member of its group.
    pub fn group_joined(&self, joined: bool) {
        let mut since = self
            .group_unjoined_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match (joined, *since) {
            (true, _) => *since = None,
            (false, None) => *since = Some(Instant::now()),
            (false, Some(_)) => {}
        }
    }

    /// How long the consumer has been out of its group; a new consumer
    /// starts the count again with [`Health::group_reset`].
    pub fn group_unjoined_for(&self) -> Option<Duration> {
        self.group_unjoined_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed())
    }

    pub fn group_reset(&self) {
        *self
            .group_unjoined_since
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_the_group_counts_from_the_first_report_until_joined_or_reset() {
        let h = Health::default();
        assert_eq!(h.group_unjoined_for(), None);
        h.group_joined(false);
        std::thread::sleep(Duration::from_millis(20));
        h.group_joined(false);
        let out = h.group_unjoined_for().unwrap();
        assert!(out >= Duration::from_millis(20), "{out:?}");
        h.group_joined(true);
        assert_eq!(h.group_unjoined_for(), None);
        h.group_joined(false);
        assert!(h.group_unjoined_for().unwrap() < Duration::from_millis(20));
        h.group_reset();
        assert_eq!(h.group_unjoined_for(), None);
    }
}
