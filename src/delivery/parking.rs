//! Parked deliveries: retried from the store with growing intervals until
//! delivered, or dead-lettered once older than `park_max_age`. Only the oldest
//! parked delivery of a key is tried, so deliveries of one alert keep order.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::retry::PassOutcome;
use super::{now_ms, Deliverer, Shared};
use crate::deadletter::{DeadLetter, Origin};
use crate::ledger::{self, Parked, Plan};
use crate::model::decode;

pub async fn sweeper(d: Arc<Deliverer>) {
    let Some(l) = d.shared.ledger.clone() else {
        return;
    };
    // A replacement pool (after a reload) sweeps only once its predecessor's
    // sweepers have stopped, so no parked delivery is tried twice at once.
    tokio::select! {
        _ = d.sweep_ready.cancelled() => {}
        _ = d.retired.cancelled() => return,
    }
    let tick = d.common.policy.park_retry_min.min(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = d.shared.abandon.cancelled() => return,
            _ = d.retired.cancelled() => return,
        }
        if !l.has_parked(d.name()) {
            d.parked_gauge().set(0);
            d.parked_age_gauge().set(0.0);
            continue;
        }
        let Ok(all) = l.parked() else { continue };
        let mine: Vec<(u64, Parked)> = all
            .into_iter()
            .filter(|(_, p)| p.destination == d.name() && p.target == d.target.key)
            .collect();
        d.parked_gauge().set(mine.len() as i64);
        let oldest = mine.iter().map(|(_, p)| p.parked_at_ms).min();
        d.parked_age_gauge()
            .set(oldest.map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0));
        let mut keys = HashSet::new();
        for (id, p) in mine {
            if d.retired.is_cancelled() {
                break;
            }
            if !keys.insert(p.key.clone()) || p.next_attempt_ms > now_ms() {
                continue;
            }
            if !d.retry_parked(&l, id, p).await {
                break;
            }
        }
    }
}

impl Deliverer {
    /// Retries one parked delivery; `false` ends this round (breaker open or
    /// shutting down).
    async fn retry_parked(&self, l: &ledger::Ledger, id: u64, mut p: Parked) -> bool {
        let started = std::time::Instant::now();
        let origin = origin_of(&p);
        let event = match decode(
            &p.value,
            &crate::model::Limits {
                max_bytes: usize::MAX,
                ..Default::default()
            },
        ) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(destination = self.name(), error = %e, "parked value no longer decodes; dropping");
                return l.unpark(id, &p, None).await.is_ok();
            }
        };
        let now = now_ms();
        let entry = match l.get(self.name(), &p.key) {
            Ok(e) => e,
            Err(_) => return false,
        };
        let record = match ledger::plan(
            &event,
            entry,
            false,
            self.common.policy.renotify_runtime_updates,
            now,
        ) {
            Plan::Skip(_, touch) => {
                let ok = l.unpark(id, &p, touch).await.is_ok();
                if ok {
                    self.outcome("skipped", started);
                }
                return ok;
            }
            Plan::ParkBehind => return true,
            Plan::Deliver(e) => e,
        };
        match self.pass(&event, &p.key).await {
            PassOutcome::Delivered => {
                if l.unpark(id, &p, Some(record)).await.is_ok() {
                    tracing::info!(destination = self.name(), key = %p.key, "parked delivery delivered");
                    self.outcome("delivered", started);
                }
                true
            }
            PassOutcome::Permanent {
                attempts,
                first,
                last,
            } => {
                p.attempts += attempts;
                if self.dead_letter(&origin, p.attempts, &first, &last).await {
                    let _ = l.unpark(id, &p, None).await;
                    self.outcome("dead_lettered", started);
                }
                true
            }
            PassOutcome::Exhausted {
                attempts,
                last,
                retry_after,
                ..
            }
            | PassOutcome::BreakerOpen {
                attempts,
                last,
                retry_after,
                ..
            } => {
                let breaker_open = self.breaker.gauge() == 1;
                p.attempts += attempts;
                p.rounds += 1;
                p.last_error = last.to_string();
                let age = Duration::from_millis((now - p.parked_at_ms).max(0) as u64);
                if age >= self.common.policy.park_max_age {
                    let first = super::SendError::retryable(last.reason, p.first_error.clone());
                    let mut last = last;
                    last.message = format!(
                        "parked for {}: {}",
                        humantime::format_duration(age),
                        last.message
                    );
                    if self.dead_letter(&origin, p.attempts, &first, &last).await {
                        let _ = l.unpark(id, &p, None).await;
                        self.outcome("dead_lettered", started);
                    }
                    return !breaker_open;
                }
                let pol = &self.common.policy;
                let backoff = pol
                    .park_retry_min
                    .saturating_mul(1u32 << p.rounds.min(20))
                    .min(pol.park_retry_max);
                let wait = retry_after.unwrap_or(Duration::ZERO).max(backoff);
                p.next_attempt_ms = now_ms() + wait.as_millis() as i64;
                let _ = l.repark(id, &p).await;
                !breaker_open
            }
            PassOutcome::Abandoned => false,
        }
    }
}

fn origin_of(p: &Parked) -> Origin {
    Origin {
        topic: p.topic.clone(),
        partition: p.partition,
        offset: p.offset,
        key: p.message_key.clone(),
        value: p.value.clone(),
    }
}

/// After a reload removed `destination` (and its tasks have stopped): its
/// parked deliveries can no longer be delivered, so they are dead-lettered
/// with reason `destination_removed`. Returns how many.
pub async fn dead_letter_removed(shared: &Shared, destination: &str) -> usize {
    let Some(l) = &shared.ledger else { return 0 };
    let parked = match l.parked() {
        Ok(all) => all,
        Err(e) => {
            tracing::error!(destination, error = %e, "cannot list the removed destination's parked deliveries");
            return 0;
        }
    };
    let mut n = 0;
    let mut targets = HashSet::new();
    for (id, p) in parked
        .into_iter()
        .filter(|(_, p)| p.destination == destination)
    {
        let origin = origin_of(&p);
        let mut record = DeadLetter::new("delivery_failed", "destination_removed".into(), &origin);
        record.destination = Some(destination.to_string());
        record.attempts = p.attempts;
        record.first_error = Some(p.first_error.clone());
        record.last_error = Some(p.last_error.clone());
        if !shared
            .dead_letters
            .write(&record, origin.key.as_deref(), &shared.abandon)
            .await
        {
            break;
        }
        if l.unpark(id, &p, None).await.is_ok() {
            n += 1;
            shared
                .metrics
                .deliveries
                .with_label_values(&[destination, "dead_lettered"])
                .inc();
            targets.insert(p.target_label.clone());
        }
    }
    for target in targets {
        shared
            .metrics
            .parked
            .with_label_values(&[destination, &target])
            .set(0);
        shared
            .metrics
            .parked_oldest_age
            .with_label_values(&[destination, &target])
            .set(0.0);
    }
    n
}
