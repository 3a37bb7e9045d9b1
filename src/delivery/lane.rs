//! A lane: one target's bounded queue and its workers. Offering never waits:
//! a full lane says so and the caller parks the delivery, so a slow target
//! holds up nobody but itself. Deliveries of one key never run at once and
//! keep their order (a RESOLVED waits behind its trigger); other keys flow
//! past a slow one. Workers exist only while there is work, so an idle lane
//! costs a map entry.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures::FutureExt;

use super::machine::{Delivery, Machine};

#[derive(Default)]
struct State {
    queue: VecDeque<Delivery>,
    /// Keys being delivered now, each with the deliveries waiting behind it.
    busy: HashMap<String, VecDeque<Delivery>>,
    /// Deliveries waiting in `busy`.
    waiting: usize,
    running: usize,
    last_active: Option<tokio::time::Instant>,
}

pub struct Lane {
    pub machine: Machine,
    state: Mutex<State>,
    /// Signalled whenever the lane takes a delivery off its queue.
    pub room: tokio::sync::Notify,
}

impl Lane {
    pub fn new(machine: Machine) -> Lane {
        Lane {
            machine,
            state: Mutex::new(State::default()),
            room: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deliveries queued or waiting behind their key.
    pub fn depth(&self) -> usize {
        let s = self.lock();
        s.queue.len() + s.waiting
    }

    /// How many more deliveries the lane takes now.
    pub fn free(&self) -> usize {
        self.machine.policy.queue_size.saturating_sub(self.depth())
    }

    /// Nothing queued or running, and not since `idle_for`; a lane whose
    /// breaker holds it back is not idle (evicting it would forget that).
    pub fn idle(&self, idle_for: std::time::Duration) -> bool {
        if self.machine.breaker_holds_back().is_some() {
            return false;
        }
        let s = self.lock();
        s.queue.is_empty()
            && s.running == 0
            && s.last_active.is_none_or(|t| t.elapsed() >= idle_for)
    }

    /// Queues `d`, starting a worker if fewer than `workers` run; gives it
    /// back when the lane is full (moved back, not boxed: the full lane is the
    /// rare path, every delivery takes this one).
    #[allow(clippy::result_large_err)]
    pub fn offer(self: &Arc<Self>, d: Delivery) -> Result<(), Delivery> {
        let start = {
            let mut s = self.lock();
            if s.queue.len() + s.waiting >= self.machine.policy.queue_size {
                return Err(d);
            }
            s.queue.push_back(d);
            s.last_active = Some(tokio::time::Instant::now());
            if s.running < self.machine.policy.workers {
                s.running += 1;
                true
            } else {
                false
            }
        };
        if start {
            let lane = self.clone();
            let fatal = self.machine.shared.fatal.clone();
            let name = self.machine.destination.clone();
            tokio::spawn(async move {
                // A panic here would leave its key held and its message
                // unfinished for ever: it stops herald instead (non-zero
                // exit), so the supervisor restarts it.
                if let Err(p) = std::panic::AssertUnwindSafe(lane.work())
                    .catch_unwind()
                    .await
                {
                    let what = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    fatal.trigger(format!(
                        "a delivery worker of destination {name} panicked: {what}"
                    ));
                }
            });
        }
        Ok(())
    }

    /// The next delivery whose key is free, marking the key busy; deliveries
    /// of busy keys wait behind them. `None` ends the worker.
    fn next(&self) -> Option<Delivery> {
        let mut s = self.lock();
        while let Some(d) = s.queue.pop_front() {
            let key = d.key().to_string();
            match s.busy.get_mut(&key) {
                Some(waiting) => {
                    waiting.push_back(d);
                    s.waiting += 1;
                }
                None => {
                    s.busy.insert(key, VecDeque::new());
                    drop(s);
                    self.room.notify_waiters();
                    return Some(d);
                }
            }
        }
        s.running -= 1;
        s.last_active = Some(tokio::time::Instant::now());
        None
    }

    /// The next delivery of `key`, or frees the key.
    fn next_of(&self, key: &str) -> Option<Delivery> {
        let mut s = self.lock();
        let next = s.busy.get_mut(key).and_then(VecDeque::pop_front);
        match next {
            Some(_) => s.waiting -= 1,
            None => {
                s.busy.remove(key);
            }
        }
        next
    }

    async fn work(self: Arc<Self>) {
        while let Some(d) = self.next() {
            let key = d.key().to_string();
            let mut current = Some(d);
            while let Some(d) = current {
                self.machine.run(d).await;
                current = self.next_of(&key);
            }
        }
    }
}
