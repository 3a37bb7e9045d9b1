//! Offset bookkeeping per partition: which messages are unfinished, the
//! contiguous watermark that may be committed, and when to pause for
//! backpressure. Pure state behind one mutex; the Kafka loop acts on it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tp {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl Tp {
    pub fn new(topic: &str, partition: i32) -> Tp {
        Tp {
            topic: Arc::from(topic),
            partition,
        }
    }
}

/// Backpressure bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_partition: usize,
    pub total: usize,
    /// Bytes of message values in flight, over every partition: 10,000
    /// messages of 4 MiB would not fit any pod, so bytes bound it too.
    pub bytes: usize,
}

#[derive(Debug, Default)]
struct Part {
    generation: u64,
    /// Offsets consumed and not final yet, with their value's size.
    pending: BTreeMap<i64, usize>,
    /// Highest offset consumed.
    high: Option<i64>,
    /// Last offset committed (the next to read).
    committed: Option<i64>,
    paused: bool,
}

impl Part {
    /// The offset to commit: the lowest unfinished one, or one past the highest
    /// consumed when nothing is pending. Never past an unfinished message.
    fn watermark(&self) -> Option<i64> {
        match self.pending.first_key_value() {
            Some((&lowest, _)) => Some(lowest),
            None => self.high.map(|h| h + 1),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    parts: HashMap<Tp, Part>,
    total: usize,
    bytes: usize,
    next_generation: u64,
}

/// Identifies one consumed message for [`Tracker::finish`].
#[derive(Debug, Clone)]
pub struct MessageToken {
    pub tp: Tp,
    pub offset: i64,
    generation: u64,
}

/// Per-partition offset state of this consumer.
pub struct Tracker {
    inner: Mutex<Inner>,
    limits: Limits,
    /// Signalled when a paused partition may resume.
    pub resume: Notify,
    /// Signalled whenever a message finishes (for shutdown draining).
    pub drained: Notify,
}

impl Tracker {
    pub fn new(limits: Limits) -> Tracker {
        Tracker {
            inner: Mutex::new(Inner::default()),
            limits,
            resume: Notify::new(),
            drained: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state stays consistent even if a holder panicked mid-update of
        // metrics, so recover rather than poison the whole consumer.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// New assignment: fresh state for each partition.
    pub fn assign(&self, tps: &[Tp]) {
        let mut inner = self.lock();
        for tp in tps {
            inner.next_generation += 1;
            let generation = inner.next_generation;
            if let Some(old) = inner.parts.insert(
                tp.clone(),
                Part {
                    generation,
                    ..Part::default()
                },
            ) {
                inner.total -= old.pending.len();
                inner.bytes -= old.pending.values().sum::<usize>();
            }
        }
    }

    /// Revocation: forgets the partitions and returns the watermarks that may
    /// still be committed for them. Late completions for them are ignored.
    pub fn revoke(&self, tps: &[Tp]) -> Vec<(Tp, i64)> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for tp in tps {
            if let Some(part) = inner.parts.remove(tp) {
                inner.total -= part.pending.len();
                inner.bytes -= part.pending.values().sum::<usize>();
                if let Some(w) = part.watermark() {
                    if Some(w) > part.committed {
                        out.push((tp.clone(), w));
                    }
                }
            }
        }
        out
    }

    /// Records a consumed message of `bytes`; `None` if its partition is
    /// not assigned.
    pub fn begin(&self, tp: &Tp, offset: i64, bytes: usize) -> Option<MessageToken> {
        let mut inner = self.lock();
        let part = inner.parts.get_mut(tp)?;
        let generation = part.generation;
        let replaced = part.pending.insert(offset, bytes);
        part.high = Some(part.high.map_or(offset, |h| h.max(offset)));
        match replaced {
            None => inner.total += 1,
            Some(old) => inner.bytes -= old,
        }
        inner.bytes += bytes;
        Some(MessageToken {
            tp: tp.clone(),
            offset,
            generation,
        })
    }

    /// Marks a message final. Ignored if its partition was revoked since.
    pub fn finish(&self, token: &MessageToken) {
        let mut inner = self.lock();
        let Some(part) = inner.parts.get_mut(&token.tp) else {
            return;
        };
        if part.generation != token.generation {
            return;
        }
        let Some(bytes) = part.pending.remove(&token.offset) else {
            return;
        };
        let resumable =
            part.paused && part.pending.len() <= self.resume_at(self.limits.per_partition);
        inner.total -= 1;
        inner.bytes -= bytes;
        let total_ok = inner.total <= self.resume_at(self.limits.total)
            && inner.bytes <= self.resume_at(self.limits.bytes);
        drop(inner);
        if resumable || total_ok {
            self.resume.notify_one();
        }
        self.drained.notify_waiters();
    }

    fn resume_at(&self, limit: usize) -> usize {
        (limit - limit / 4).saturating_sub(1)
    }

    /// Partitions at a bound and not yet paused; marks them paused.
    pub fn to_pause(&self) -> Vec<Tp> {
        let mut inner = self.lock();
        let over_total = inner.total >= self.limits.total || inner.bytes >= self.limits.bytes;
        let per = self.limits.per_partition;
        let mut out = Vec::new();
        for (tp, part) in inner.parts.iter_mut() {
            if !part.paused && (over_total || part.pending.len() >= per) {
                part.paused = true;
                out.push(tp.clone());
            }
        }
        out
    }

    /// Paused partitions back under their bounds; marks them resumed.
    pub fn to_resume(&self) -> Vec<Tp> {
        let mut inner = self.lock();
        if inner.total > self.resume_at(self.limits.total)
            || inner.bytes > self.resume_at(self.limits.bytes)
        {
            return Vec::new();
        }
        let per = self.resume_at(self.limits.per_partition);
        let mut out = Vec::new();
        for (tp, part) in inner.parts.iter_mut() {
            if part.paused && part.pending.len() <= per {
                part.paused = false;
                out.push(tp.clone());
            }
        }
        out
    }

    /// Forgets what is in flight on `tp` and returns where to consume it from
    /// again (its lowest unfinished offset): after a store failure the
    /// messages abandoned meanwhile are read again. Late completions of the
    /// forgotten ones are ignored.
    pub fn rewind(&self, tp: &Tp) -> Option<i64> {
        let mut inner = self.lock();
        inner.next_generation += 1;
        let generation = inner.next_generation;
        let part = inner.parts.get_mut(tp)?;
        let from = part.pending.first_key_value().map(|(o, _)| *o);
        let (n, bytes) = (part.pending.len(), part.pending.values().sum::<usize>());
        part.pending.clear();
        part.high = None;
        part.paused = false;
        part.generation = generation;
        inner.total -= n;
        inner.bytes -= bytes;
        from
    }

    /// Partitions assigned now.
    pub fn assigned(&self) -> Vec<Tp> {
        self.lock().parts.keys().cloned().collect()
    }

    /// Forgets every partition (the consumer is gone): late completions are
    /// ignored, nothing more is committed for them.
    pub fn revoke_all(&self) {
        let mut inner = self.lock();
        inner.parts.clear();
        inner.total = 0;
        inner.bytes = 0;
    }

    /// Bytes of message values in flight.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Watermarks ahead of the last commit.
    pub fn commit_candidates(&self) -> Vec<(Tp, i64)> {
        let inner = self.lock();
        inner
            .parts
            .iter()
            .filter_map(|(tp, p)| {
                p.watermark()
                    .filter(|w| Some(*w) > p.committed)
                    .map(|w| (tp.clone(), w))
            })
            .collect()
    }

    /// Records a successful commit.
    pub fn committed(&self, tp: &Tp, offset: i64) {
        let mut inner = self.lock();
        if let Some(p) = inner.parts.get_mut(tp) {
            p.committed = Some(p.committed.map_or(offset, |c| c.max(offset)));
        }
    }

    /// Messages in flight, in total.
    pub fn total(&self) -> usize {
        self.lock().total
    }

    /// Per partition: (in flight, paused), for metrics.
    pub fn snapshot(&self) -> Vec<(Tp, usize, bool)> {
        let inner = self.lock();
        inner
            .parts
            .iter()
            .map(|(tp, p)| (tp.clone(), p.pending.len(), p.paused))
            .collect()
    }
}

/// Shared by the deliveries of one message; the message is final when the last
/// ticket is done. A ticket dropped without [`Ticket::done`] abandons the
/// message: its offset is not committed, so it is consumed again.
pub struct Completion {
    tracker: Arc<Tracker>,
    token: MessageToken,
    remaining: AtomicUsize,
}

pub struct Ticket(Arc<Completion>);

impl Ticket {
    /// `n` tickets for one message; with `n == 0` the message is final now.
    pub fn split(tracker: Arc<Tracker>, token: MessageToken, n: usize) -> Vec<Ticket> {
        if n == 0 {
            tracker.finish(&token);
            return Vec::new();
        }
        let c = Arc::new(Completion {
            tracker,
            token,
            remaining: AtomicUsize::new(n),
        });
        (0..n).map(|_| Ticket(c.clone())).collect()
    }

    pub fn done(self) {
        if self.0.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.tracker.finish(&self.0.token);
        }
    }

    pub fn token(&self) -> &MessageToken {
        &self.0.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(per: usize, total: usize) -> Arc<Tracker> {
        Arc::new(Tracker::new(Limits {
            per_partition: per,
            total,
            bytes: usize::MAX,
        }))
    }

    #[test]
    fn watermark_never_passes_an_unfinished_message() {
        let t = tracker(100, 100);
        let tp = Tp::new("t", 0);
        t.assign(std::slice::from_ref(&tp));
        let toks: Vec<_> = (10..15).map(|o| t.begin(&tp, o, 1).unwrap()).collect();
        assert!(t.commit_candidates().iter().all(|(_, w)| *w == 10));
        t.finish(&toks[1]);
        t.finish(&toks[2]);
        assert_eq!(t.commit_candidates(), vec![(tp.clone(), 10)]);
        t.finish(&toks[0]);
        assert_eq!(t.commit_candidates(), vec![(tp.clone(), 13)]);
        t.committed(&tp, 13);
        t.finish(&toks[4]);
        assert!(t.commit_candidates().is_empty(), "13 is still pending");
        t.finish(&toks[3]);
        assert_eq!(t.commit_candidates(), vec![(tp.clone(), 15)]);
        assert_eq!(t.total(), 0);
    }

    #[test]
    fn tickets_finish_a_message_only_when_all_are_done() {
        let t = tracker(100, 100);
        let tp = Tp::new("t", 1);
        t.assign(std::slice::from_ref(&tp));
        let tok = t.begin(&tp, 0, 1).unwrap();
        let mut tickets = Ticket::split(t.clone(), tok, 3);
        tickets.pop().unwrap().done();
        tickets.pop().unwrap().done();
        assert_eq!(t.commit_candidates(), vec![(tp.clone(), 0)]);
        // An abandoned ticket keeps the message unfinished.
        drop(tickets.pop());
        assert_eq!(t.commit_candidates(), vec![(tp.clone(), 0)]);

        let tok = t.begin(&tp, 1, 1).unwrap();
        assert!(Ticket::split(t.clone(), tok, 0).is_empty());
        assert_eq!(t.total(), 1, "offset 0 still pending, 1 final");
    }

    #[test]
    fn revoked_partition_ignores_late_completions() {
        let t = tracker(100, 100);
        let tp = Tp::new("t", 0);
        t.assign(std::slice::from_ref(&tp));
        let a = t.begin(&tp, 5, 1).unwrap();
        let b = t.begin(&tp, 6, 1).unwrap();
        t.finish(&a);
        assert_eq!(t.revoke(std::slice::from_ref(&tp)), vec![(tp.clone(), 6)]);
        t.assign(std::slice::from_ref(&tp));
        t.finish(&b);
        assert!(t.commit_candidates().is_empty());
        assert_eq!(t.total(), 0);
    }

    #[test]
    fn pauses_at_the_bound_and_resumes_below_it() {
        let t = tracker(4, 100);
        let (p0, p1) = (Tp::new("t", 0), Tp::new("t", 1));
        t.assign(&[p0.clone(), p1.clone()]);
        let toks: Vec<_> = (0..4).map(|o| t.begin(&p0, o, 1).unwrap()).collect();
        t.begin(&p1, 0, 1).unwrap();
        assert_eq!(t.to_pause(), vec![p0.clone()]);
        assert!(t.to_pause().is_empty(), "already paused");
        t.finish(&toks[0]);
        assert!(t.to_resume().is_empty(), "3 pending > resume point 2");
        t.finish(&toks[1]);
        assert_eq!(t.to_resume(), vec![p0.clone()]);
    }

    #[test]
    fn bytes_in_flight_pause_every_partition_and_a_rewind_starts_over() {
        let t = Arc::new(Tracker::new(Limits {
            per_partition: 100,
            total: 100,
            bytes: 10 << 20,
        }));
        let (p0, p1) = (Tp::new("t", 0), Tp::new("t", 1));
        t.assign(&[p0.clone(), p1.clone()]);
        let big = t.begin(&p0, 7, 6 << 20).unwrap();
        assert!(t.to_pause().is_empty(), "6 MiB < 10 MiB");
        let other = t.begin(&p1, 3, 5 << 20).unwrap();
        assert_eq!(t.to_pause().len(), 2, "11 MiB: both pause");
        t.finish(&big);
        assert_eq!(t.bytes(), 5 << 20);
        assert_eq!(t.to_resume().len(), 2, "5 MiB is below the resume point");
        // A rewind forgets p1's unfinished message and says where to re-read.
        assert_eq!(t.rewind(&p1), Some(3));
        assert_eq!((t.total(), t.bytes()), (0, 0));
        t.finish(&other);
        assert_eq!(
            t.total(),
            0,
            "the forgotten message's completion is ignored"
        );
        assert_eq!(t.rewind(&p1), None, "nothing left to re-read");
    }

    #[test]
    fn total_bound_pauses_every_partition() {
        let t = tracker(100, 3);
        let (p0, p1) = (Tp::new("t", 0), Tp::new("t", 1));
        t.assign(&[p0.clone(), p1.clone()]);
        let a = t.begin(&p0, 0, 1).unwrap();
        let b = t.begin(&p0, 1, 1).unwrap();
        t.begin(&p1, 0, 1).unwrap();
        let mut paused = t.to_pause();
        paused.sort();
        assert_eq!(paused, vec![p0.clone(), p1.clone()]);
        assert!(t.to_resume().is_empty(), "total 3 > resume point 2");
        t.finish(&a);
        assert_eq!(t.to_resume().len(), 2);
        t.finish(&b);
    }
}
