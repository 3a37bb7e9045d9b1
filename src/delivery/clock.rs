//! The delivery layer's clock: wall-clock milliseconds (parked rows and
//! ledger entries are stored with them and outlive the process), but moved
//! forward by monotonic time from one reading at start, so a wall-clock jump
//! while herald runs neither dead-letters every parked delivery nor freezes
//! their retries.

/// Wall-clock milliseconds since the epoch, as the delivery layer sees them.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The system's clock read once, then advanced by tokio's monotonic time.
pub struct SystemClock {
    wall_at_start: i64,
    started: tokio::time::Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            wall_at_start: chrono::Utc::now().timestamp_millis(),
            started: tokio::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let elapsed = self.started.elapsed().as_millis().min(i64::MAX as u128) as i64;
        self.wall_at_start.saturating_add(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn moves_with_monotonic_time_only() {
        let c = SystemClock::new();
        let t0 = c.now_ms();
        tokio::time::advance(std::time::Duration::from_secs(90)).await;
        assert_eq!(c.now_ms() - t0, 90_000);
    }
}
