//! A destination's sweeper: retries what is parked, by target, as fast as
//! the target's lane takes it — due rows come from the store's index a page
//! at a time, read on a blocking thread — and dead-letters rows parked longer
//! than `park_max_age` whatever their next attempt, rows that no longer read,
//! and values that no longer decode. Every retry goes through the same state
//! machine as a fresh delivery.

use std::sync::Arc;
use std::time::Duration;

use super::machine::Delivery;
use super::{Inbound, Pool, Shared};
use crate::deadletter::{DeadLetter, Origin};
use crate::ledger::{Ledger, Parked, Row};
use crate::model::decode;
use crate::notifiers::Target;

/// Rows read from the store per round and target.
const PAGE: usize = 256;

pub(super) async fn run(pool: Arc<Pool>) {
    let Some(l) = pool.shared.ledger.clone() else {
        return;
    };
    tokio::select! {
        _ = pool.sweep_ready.cancelled() => {}
        _ = pool.retired.cancelled() => return,
    }
    let tick = pool.policy.park_retry_min.min(Duration::from_secs(1));
    let mut wait = Duration::ZERO;
    let mut last_expiry: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = pool.shared.abandon.cancelled() => return,
            _ = pool.retired.cancelled() => return,
        }
        wait = tick;
        pool.shared
            .metrics
            .destination_queue_depth
            .with_label_values(&[&pool.name])
            .set(pool.depth() as i64);
        if !l.healthy() || l.parked_count(&pool.name) == 0 {
            set_oldest_age(&pool, None);
            continue;
        }
        let now = pool.shared.clock.now_ms();
        if last_expiry.is_none_or(|t| t.elapsed() >= tick) {
            last_expiry = Some(tokio::time::Instant::now());
            expire(&pool, &l, now).await;
        }
        // Keep going while the lanes take pages, look again soon while a
        // lane is full, and rest a tick once nothing is due.
        let swept = retry_due(&pool, &l, now).await;
        if swept.offered > 0 {
            wait = Duration::from_millis(5);
        } else if let Some(soon) = swept.look_again {
            wait = wait.min(soon.max(Duration::from_millis(20)));
        }
    }
}

fn set_oldest_age(pool: &Pool, parked_at_ms: Option<i64>) {
    let age = parked_at_ms.map_or(0.0, |t| {
        (pool.shared.clock.now_ms() - t).max(0) as f64 / 1000.0
    });
    pool.shared
        .metrics
        .parked_oldest_age
        .with_label_values(&[&pool.name, ""])
        .set(age);
}

/// Reads rows `ids` on a blocking thread.
async fn rows(l: &Ledger, ids: Vec<u64>) -> Vec<(u64, Row)> {
    let l = l.clone();
    tokio::task::spawn_blocking(move || l.rows(&ids).unwrap_or_default())
        .await
        .unwrap_or_default()
}

/// Dead-letters the destination's rows parked longer than `park_max_age`,
/// oldest first, even when their next attempt is far off (a huge
/// `Retry-After`, a long park interval).
async fn expire(pool: &Pool, l: &Ledger, now: i64) {
    let max_age = pool.policy.park_max_age.as_millis().min(i64::MAX as u128) as i64;
    let (l2, name) = (l.clone(), pool.name.clone());
    let oldest = tokio::task::spawn_blocking(move || l2.oldest_with_age(&name, PAGE))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let expired: Vec<u64> = oldest
        .iter()
        .take_while(|(_, at)| now.saturating_sub(*at) >= max_age)
        .map(|(id, _)| *id)
        .collect();
    set_oldest_age(
        pool,
        oldest
            .get(expired.len())
            .or(oldest.last())
            .map(|(_, at)| *at),
    );
    for (id, row) in rows(l, expired).await {
        let p = match row {
            Row::Parked(p) => p,
            Row::Unreadable(bytes) => {
                unreadable(&pool.shared, &pool.name, id, bytes).await;
                continue;
            }
        };
        if !pool.shared.retrying.claim(id) {
            continue; // being retried now; the machine decides
        }
        let age = now.saturating_sub(p.parked_at_ms);
        let last = format!(
            "parked for {}: {}",
            humantime::format_duration(Duration::from_secs((age / 1000).max(0) as u64)),
            p.last_error
        );
        let done = dead_letter_row(&pool.shared, &p, "park_max_age", Some(last)).await
            && l.unpark(id, &p, None).await.is_ok();
        pool.shared.retrying.release(id);
        if done {
            pool.shared
                .metrics
                .deliveries
                .with_label_values(&[&pool.name, "dead_lettered"])
                .inc();
            if let Some(lane) = pool.lanes().get(&p.target) {
                lane.machine.parked_delta(-1);
            }
        }
    }
}

/// What one round of `retry_due` did.
struct Swept {
    offered: usize,
    /// When a target with due rows may take them (its lane full, its
    /// breaker cooling down or probing), if sooner than a tick.
    look_again: Option<Duration>,
}

/// Offers due rows to their lanes while the lanes have room.
async fn retry_due(pool: &Pool, l: &Ledger, now: i64) -> Swept {
    let (l2, name, max) = (l.clone(), pool.name.clone(), pool.policy.max_targets);
    let targets = tokio::task::spawn_blocking(move || l2.due_targets(&name, now, max))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut offered = 0;
    let mut look_again: Option<Duration> = None;
    let mut soon = |d: Duration| look_again = Some(look_again.map_or(d, |l| l.min(d)));
    for value in targets {
        if pool.retired.is_cancelled() || pool.shared.abandon.is_cancelled() {
            break;
        }
        let target = match retarget(pool, &value) {
            Ok(t) => t,
            Err(why) => {
                refuse_target(pool, l, &value, now, why).await;
                continue;
            }
        };
        let Some(lane) = pool.lane(&target) else {
            continue; // max_targets busy lanes: later
        };
        // A hold or cool-down may have lapsed with no attempt since.
        lane.machine.update_breaker_gauge();
        if let Some(d) = lane.machine.breaker_holds_back() {
            soon(d);
            continue;
        }
        let mut room = lane.free();
        if room == 0 {
            soon(Duration::ZERO);
            continue;
        }
        if lane.machine.breaker_probe_next() {
            // One row probes; the rest wait for its answer rather than
            // being pushed back a cool-down.
            room = 1;
            soon(Duration::ZERO);
        }
        let (l2, name, v) = (l.clone(), pool.name.clone(), value.clone());
        let retrying = pool.shared.retrying.clone();
        // Claimed on the blocking thread, so rows being tried do not fill the page.
        let ids = tokio::task::spawn_blocking(move || {
            let mut claimed = Vec::new();
            let ids = l2.due_taking(&name, &v, now, room.min(PAGE), |id| {
                let new = retrying.claim(id);
                if new {
                    claimed.push(id);
                }
                new
            });
            if ids.is_err() {
                claimed.into_iter().for_each(|id| retrying.release(id));
            }
            ids
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
        let found = rows(l, ids.clone()).await;
        // Rows gone since (delivered, expired) are no longer claimed.
        for id in &ids {
            if !found.iter().any(|(f, _)| f == id) {
                pool.shared.retrying.release(*id);
            }
        }
        let mut found = found.into_iter();
        while let Some((id, row)) = found.next() {
            let p = match row {
                Row::Parked(p) => p,
                Row::Unreadable(bytes) => {
                    unreadable(&pool.shared, &pool.name, id, bytes).await;
                    pool.shared.retrying.release(id);
                    continue;
                }
            };
            let event = match decode(&p.value, &pool.shared.limits) {
                Ok(e) => e,
                Err(invalid) => {
                    // Decoding rules changed since it was parked (a lower
                    // limit, say): it can never be delivered as it is.
                    if dead_letter_row(
                        &pool.shared,
                        &p,
                        &format!("parked value no longer decodes: {invalid}"),
                        None,
                    )
                    .await
                        && l.unpark(id, &p, None).await.is_ok()
                    {
                        lane.machine.parked_delta(-1);
                    }
                    pool.shared.retrying.release(id);
                    continue;
                }
            };
            let d = Delivery {
                message: Arc::new(Inbound {
                    origin: origin_of(&p),
                    key: p.key.clone(),
                    event,
                }),
                target: target.clone(),
                ticket: None,
                parked: Some((id, p)),
                enqueued: tokio::time::Instant::now(),
            };
            match lane.offer(d) {
                Ok(()) => offered += 1,
                Err(_) => {
                    // The lane filled up: this row and the rest wait.
                    soon(Duration::ZERO);
                    pool.shared.retrying.release(id);
                    for (rest, _) in found.by_ref() {
                        pool.shared.retrying.release(rest);
                    }
                    break;
                }
            }
        }
    }
    Swept {
        offered,
        look_again,
    }
}

/// The target a parked row names, checked again (allow-lists may have
/// changed since it was parked).
fn retarget(pool: &Pool, value: &str) -> Result<Target, String> {
    if value.is_empty() {
        return Ok(Target::default());
    }
    match pool.notifier.annotation() {
        Some(a) => a
            .kind
            .check(value)
            .map_err(|why| format!("annotation {}: {why}", a.key)),
        None => Err("this destination no longer routes by annotation".into()),
    }
}

/// Dead-letters the due rows of a target the destination may no longer send
/// to (`target_not_allowed`).
async fn refuse_target(pool: &Pool, l: &Ledger, value: &str, now: i64, why: String) {
    let (l2, name, v) = (l.clone(), pool.name.clone(), value.to_string());
    let ids = tokio::task::spawn_blocking(move || l2.due(&name, &v, now, PAGE))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    for (id, row) in rows(l, ids).await {
        if let Row::Parked(p) = row {
            if pool.shared.retrying.claim(id) {
                if dead_letter_row(&pool.shared, &p, "target_not_allowed", Some(why.clone())).await
                {
                    let _ = l.unpark(id, &p, None).await;
                }
                pool.shared.retrying.release(id);
            }
        }
    }
}

pub(super) fn origin_of(p: &Parked) -> Origin {
    Origin {
        topic: p.topic.clone(),
        partition: p.partition,
        offset: p.offset,
        key: p.message_key.clone(),
        value: p.value.clone(),
    }
}

/// Writes the dead letter of a parked row (`delivery_failed`).
async fn dead_letter_row(shared: &Shared, p: &Parked, reason: &str, last: Option<String>) -> bool {
    let mut record = DeadLetter::new("delivery_failed", reason.to_string(), &origin_of(p));
    record.destination = Some(p.destination.clone());
    record.attempts = p.attempts;
    record.first_error = Some(p.first_error.clone());
    record.last_error = Some(last.unwrap_or_else(|| p.last_error.clone()));
    shared
        .dead_letters
        .write(&record, p.message_key.as_deref(), &shared.abandon)
        .await
}

/// A row that no longer reads as a parked delivery: its bytes go to the
/// dead-letter topic, then it is removed. Never skipped silently.
async fn unreadable(shared: &Shared, destination: &str, id: u64, bytes: Vec<u8>) {
    tracing::error!(
        destination,
        id,
        "a parked row no longer reads; dead-lettering its bytes"
    );
    let origin = Origin {
        topic: String::new(),
        partition: -1,
        offset: -1,
        key: None,
        value: bytes,
    };
    let mut record = DeadLetter::new("delivery_failed", "parked_row_unreadable".into(), &origin);
    record.destination = Some(destination.to_string());
    if shared
        .dead_letters
        .write(&record, None, &shared.abandon)
        .await
    {
        if let Some(l) = &shared.ledger {
            let _ = l.drop_row(id, destination).await;
        }
    }
}

/// Dead-letters every parked delivery of a destination that is gone (removed
/// by a reload, or absent from the configuration at start): `reason`
/// `destination_removed`. Returns how many.
pub async fn dead_letter_all(shared: &Shared, destination: &str) -> usize {
    let Some(l) = &shared.ledger else { return 0 };
    // Removals of rows its lanes delivered may still be queued: once they
    // are durable, what is left was never delivered.
    if l.flush().await.is_err() {
        return 0;
    }
    let mut n = 0;
    loop {
        let (l2, name) = (l.clone(), destination.to_string());
        let ids = match tokio::task::spawn_blocking(move || l2.oldest(&name, PAGE)).await {
            Ok(Ok(ids)) if !ids.is_empty() => ids,
            _ => break,
        };
        let before = n;
        for (id, row) in rows(l, ids).await {
            match row {
                Row::Parked(p) => {
                    if !dead_letter_row(shared, &p, "destination_removed", None).await {
                        return n;
                    }
                    if l.unpark(id, &p, None).await.is_ok() {
                        n += 1;
                        shared
                            .metrics
                            .deliveries
                            .with_label_values(&[destination, "dead_lettered"])
                            .inc();
                    }
                }
                Row::Unreadable(bytes) => {
                    unreadable(shared, destination, id, bytes).await;
                    n += 1;
                }
            }
        }
        if n == before {
            break; // nothing could be removed: stop rather than spin
        }
    }
    let labels = [destination, ""];
    let _ = shared.metrics.parked.remove_label_values(&labels);
    let _ = shared
        .metrics
        .parked_oldest_age
        .remove_label_values(&labels);
    n
}
