//! The ledger: what was delivered where, and the parked deliveries, in one
//! crash-safe redb file under `state_dir`.
//!
//! Writes go through one writer thread that commits them in batches (group
//! commit): every caller waits until its batch is durable, and a batch costs
//! one fsync however many deliveries it records.

mod entry;
mod plan;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use entry::Entry;
pub use plan::{idempotency_key, key_of, plan, Plan};

use crate::telemetry::Metrics;

/// Bumped when the file's layout changes; checked at open.
pub const FORMAT_VERSION: u64 = 1;
/// The ledger's page cache (redb's default is 1 GiB).
const CACHE_BYTES: usize = 16 << 20;
const FILE_NAME: &str = "herald.redb";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// `<destination>\0<key>` → [`Entry`]; key = alert id or `audit:<sha256>`.
const DELIVERED: TableDefinition<&str, &[u8]> = TableDefinition::new("delivered");
/// Parking sequence number → [`Parked`] as JSON.
const PARKED: TableDefinition<u64, &[u8]> = TableDefinition::new("parked");

/// How long entries are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// After the alert was last seen.
    pub alerts: Duration,
    /// After a RESOLVED was delivered or seen.
    pub resolved: Duration,
    /// Audit keys.
    pub audit: Duration,
}

/// A delivery waiting in the store for its destination to come back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parked {
    pub destination: String,
    /// The annotation-routed target (a secret such as a webhook URL, or "").
    #[serde(default)]
    pub target: String,
    /// The target as metrics and listings show it.
    #[serde(default)]
    pub target_label: String,
    /// The ledger key (alert id or audit key); deliveries of one key keep order.
    pub key: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(default, with = "opt_b64")]
    pub message_key: Option<Vec<u8>>,
    #[serde(with = "b64")]
    pub value: Vec<u8>,
    /// Send attempts so far, over every retry pass.
    pub attempts: u32,
    /// Retry rounds from the store so far (the interval grows with them).
    #[serde(default)]
    pub rounds: u32,
    pub first_error: String,
    pub last_error: String,
    pub parked_at_ms: i64,
    pub next_attempt_ms: i64,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

mod opt_b64 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::b64::serialize(v, s),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "super::b64")] Vec<u8>);
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("state_dir {dir}: another herald process holds the lock ({lock})")]
    Locked { dir: String, lock: String },
    #[error("state_dir {dir}: {what}: {err}")]
    Io {
        dir: String,
        what: &'static str,
        err: String,
    },
    #[error("ledger {path}: format version {found}, this herald reads version {FORMAT_VERSION}; see the README's upgrade notes")]
    Version { path: String, found: u64 },
    #[error("ledger store failure: {0}")]
    Store(String),
}

fn store<E: std::fmt::Display>(e: E) -> LedgerError {
    LedgerError::Store(e.to_string())
}

enum Op {
    Put(String, Entry),
    Park(u64, Vec<u8>),
    Unpark(u64),
    Sweep(i64, Retention),
}

struct Batch {
    ops: Vec<Op>,
    done: oneshot::Sender<Result<usize, String>>,
}

/// Handle to the ledger; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    path: PathBuf,
    writer: std::sync::mpsc::SyncSender<Batch>,
    healthy: AtomicBool,
    next_park: Mutex<u64>,
    /// (destination, key) pairs with a parked delivery.
    parked_keys: Mutex<HashSet<(String, String)>>,
    /// Entries handed to the writer but not yet durable, by joined key:
    /// `get` sees them, so the next delivery of a key plans on the record
    /// its predecessor is still writing.
    pending: Mutex<HashMap<String, Entry>>,
    _lock: File,
}

fn join_key(destination: &str, key: &str) -> String {
    format!("{destination}\0{key}")
}

impl Ledger {
    /// Opens (or creates) `state_dir/herald.redb`, locked for this process.
    pub fn open(state_dir: &Path, metrics: Arc<Metrics>) -> Result<Ledger, LedgerError> {
        let dir = state_dir.display().to_string();
        crate::files::private_dir(state_dir).map_err(|e| LedgerError::Io {
            dir: dir.clone(),
            what: "cannot create",
            err: e.to_string(),
        })?;
        let lock_path = state_dir.join("herald.lock");
        let lock = crate::files::private_write(&lock_path).map_err(|e| LedgerError::Io {
            dir: dir.clone(),
            what: "cannot open the lock file",
            err: e.to_string(),
        })?;
        if lock.try_lock().is_err() {
            return Err(LedgerError::Locked {
                dir,
                lock: lock_path.display().to_string(),
            });
        }
        let path = state_dir.join(FILE_NAME);
        // Created 0600 (or narrowed) before redb opens it: it holds alerts.
        crate::files::private_write(&path).map_err(|e| LedgerError::Io {
            dir: dir.clone(),
            what: "cannot create the ledger file",
            err: e.to_string(),
        })?;
        // redb caches up to 1 GiB by default; the working set (recent keys,
        // the parked table) is far smaller, and RSS is what operators watch.
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(store)?;
        let (next_park, parked_keys) = {
            let tx = db.begin_write().map_err(store)?;
            {
                let mut meta = tx.open_table(META).map_err(store)?;
                let found = meta
                    .get("format_version")
                    .map_err(store)?
                    .map(|v| v.value());
                match found {
                    None => {
                        meta.insert("format_version", FORMAT_VERSION)
                            .map_err(store)?;
                    }
                    Some(v) if v == FORMAT_VERSION => {}
                    Some(v) => {
                        return Err(LedgerError::Version {
                            path: path.display().to_string(),
                            found: v,
                        })
                    }
                }
                tx.open_table(DELIVERED).map_err(store)?;
            }
            let mut keys = HashSet::new();
            let mut next = 1;
            {
                let parked = tx.open_table(PARKED).map_err(store)?;
                for row in parked.iter().map_err(store)? {
                    let (id, v) = row.map_err(store)?;
                    next = next.max(id.value() + 1);
                    if let Ok(p) = serde_json::from_slice::<Parked>(v.value()) {
                        keys.insert((p.destination, p.key));
                    }
                }
            }
            tx.commit().map_err(store)?;
            (next, keys)
        };
        let db = Arc::new(db);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(4096);
        let writer_db = db.clone();
        let writer_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("herald-ledger".into())
            .spawn(move || writer(writer_db, rx, writer_metrics))
            .map_err(|e| LedgerError::Store(e.to_string()))?;
        Ok(Ledger {
            inner: Arc::new(Inner {
                db,
                path,
                writer: tx,
                healthy: AtomicBool::new(true),
                next_park: Mutex::new(next_park),
                parked_keys: Mutex::new(parked_keys),
                pending: Mutex::new(HashMap::new()),
                _lock: lock,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// False after a store failure; `/readyz` reports it.
    pub fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    fn fail(&self, e: impl std::fmt::Display) -> LedgerError {
        if self.inner.healthy.swap(false, Ordering::Relaxed) {
            tracing::error!(
                error = %e,
                path = %self.inner.path.display(),
                "ledger store failure: offsets are no longer committed until herald is restarted with a working store"
            );
        }
        LedgerError::Store(e.to_string())
    }

    /// What was last delivered for `key` at `destination`.
    pub fn get(&self, destination: &str, key: &str) -> Result<Option<Entry>, LedgerError> {
        let joined = join_key(destination, key);
        if let Some(e) = self.pending().get(&joined) {
            return Ok(Some(*e));
        }
        let read = || -> Result<Option<Entry>, redb::Error> {
            let tx = self.inner.db.begin_read()?;
            let t = tx.open_table(DELIVERED)?;
            Ok(t.get(joined.as_str())?
                .and_then(|v| Entry::decode(v.value())))
        };
        read().map_err(|e| self.fail(e))
    }

    /// Whether `destination` has any parked delivery.
    pub fn has_parked(&self, destination: &str) -> bool {
        self.inner
            .parked_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(d, _)| d == destination)
    }

    /// Whether a delivery for `key` is parked at `destination`.
    pub fn is_parked(&self, destination: &str, key: &str) -> bool {
        self.inner
            .parked_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(destination.to_string(), key.to_string()))
    }

    async fn submit(&self, ops: Vec<Op>) -> Result<usize, LedgerError> {
        let wait = self.enqueue(ops).await?;
        self.durable(wait).await
    }

    /// Hands a batch to the writer thread, in call order; returns what
    /// resolves once the batch is durable.
    async fn enqueue(
        &self,
        ops: Vec<Op>,
    ) -> Result<oneshot::Receiver<Result<usize, String>>, LedgerError> {
        if !self.healthy() {
            return Err(LedgerError::Store("ledger is failed".into()));
        }
        let (done, wait) = oneshot::channel();
        // The channel is bounded; a full one means the disk is behind, and
        // only then is a blocking thread worth its hand-off.
        match self.inner.writer.try_send(Batch { ops, done }) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(batch)) => {
                let writer = self.inner.writer.clone();
                tokio::task::spawn_blocking(move || writer.send(batch))
                    .await
                    .map_err(|e| self.fail(e))?
                    .map_err(|e| self.fail(e))?;
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                return Err(self.fail("the ledger writer has stopped"));
            }
        }
        Ok(wait)
    }

    async fn durable(
        &self,
        wait: oneshot::Receiver<Result<usize, String>>,
    ) -> Result<usize, LedgerError> {
        match wait.await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(self.fail(e)),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a delivery without waiting for the disk: once this returns,
    /// `get` sees the entry and the write is queued behind every earlier one;
    /// the returned future resolves once it is durable (only then may the
    /// message's offset be committed).
    pub async fn record_pending(
        &self,
        destination: &str,
        key: &str,
        entry: Entry,
    ) -> Result<
        impl std::future::Future<Output = Result<(), LedgerError>> + Send + 'static,
        LedgerError,
    > {
        let joined = join_key(destination, key);
        self.pending().insert(joined.clone(), entry);
        let queued = self.enqueue(vec![Op::Put(joined.clone(), entry)]).await;
        let this = self.clone();
        let settle = move |this: &Ledger| {
            let mut pending = this.pending();
            // A later record of the same key may have replaced it meanwhile.
            if pending.get(&joined) == Some(&entry) {
                pending.remove(&joined);
            }
        };
        let wait = match queued {
            Ok(w) => w,
            Err(e) => {
                settle(&this);
                return Err(e);
            }
        };
        Ok(async move {
            let result = this.durable(wait).await.map(|_| ());
            settle(&this);
            result
        })
    }

    /// Records a delivery; returns once it is durable.
    pub async fn record(
        &self,
        destination: &str,
        key: &str,
        entry: Entry,
    ) -> Result<(), LedgerError> {
        self.submit(vec![Op::Put(join_key(destination, key), entry)])
            .await
            .map(|_| ())
    }

    /// Parks a delivery durably; returns its id.
    pub async fn park(&self, p: &Parked) -> Result<u64, LedgerError> {
        let id = {
            let mut next = self
                .inner
                .next_park
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let id = *next;
            *next += 1;
            id
        };
        let bytes = serde_json::to_vec(p).expect("parked serialises");
        self.submit(vec![Op::Park(id, bytes)]).await?;
        self.inner
            .parked_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((p.destination.clone(), p.key.clone()));
        Ok(id)
    }

    /// Replaces a parked delivery (after a failed retry) under the same id.
    pub async fn repark(&self, id: u64, p: &Parked) -> Result<(), LedgerError> {
        let bytes = serde_json::to_vec(p).expect("parked serialises");
        self.submit(vec![Op::Park(id, bytes)]).await.map(|_| ())
    }

    /// Removes a parked delivery, recording `entry` for its key in the same batch.
    pub async fn unpark(
        &self,
        id: u64,
        p: &Parked,
        entry: Option<Entry>,
    ) -> Result<(), LedgerError> {
        let mut ops = vec![Op::Unpark(id)];
        if let Some(e) = entry {
            ops.push(Op::Put(join_key(&p.destination, &p.key), e));
        }
        self.submit(ops).await?;
        let still = self
            .parked()?
            .iter()
            .any(|(_, q)| q.destination == p.destination && q.key == p.key);
        if !still {
            self.inner
                .parked_keys
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(p.destination.clone(), p.key.clone()));
        }
        Ok(())
    }

    /// Every parked delivery, oldest first.
    pub fn parked(&self) -> Result<Vec<(u64, Parked)>, LedgerError> {
        let read = || -> Result<Vec<(u64, Parked)>, redb::Error> {
            let tx = self.inner.db.begin_read()?;
            let t = tx.open_table(PARKED)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (id, v) = row?;
                if let Ok(p) = serde_json::from_slice::<Parked>(v.value()) {
                    out.push((id.value(), p));
                }
            }
            Ok(out)
        };
        read().map_err(|e| self.fail(e))
    }

    /// Number of delivery entries.
    pub fn len(&self) -> Result<u64, LedgerError> {
        let read = || -> Result<u64, redb::Error> {
            let tx = self.inner.db.begin_read()?;
            Ok(tx.open_table(DELIVERED)?.len()?)
        };
        read().map_err(|e| self.fail(e))
    }

    pub fn is_empty(&self) -> Result<bool, LedgerError> {
        self.len().map(|n| n == 0)
    }

    /// Deletes expired entries; returns how many.
    pub async fn sweep(&self, now_ms: i64, retention: Retention) -> Result<usize, LedgerError> {
        self.submit(vec![Op::Sweep(now_ms, retention)]).await
    }

    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.inner.path)
            .map(|m| m.len())
            .unwrap_or(0)
    }
}

/// The writer thread: takes every batch waiting, commits them in one durable
/// transaction, then answers each.
fn writer(db: Arc<Database>, rx: std::sync::mpsc::Receiver<Batch>, metrics: Arc<Metrics>) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while batches.len() < 1024 {
            match rx.try_recv() {
                Ok(b) => batches.push(b),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let result = apply(&db, &batches);
        metrics
            .ledger_write_duration
            .observe(started.elapsed().as_secs_f64());
        metrics.ledger_batch_size.observe(batches.len() as f64);
        match result {
            Ok(counts) => {
                for (b, n) in batches.into_iter().zip(counts) {
                    let _ = b.done.send(Ok(n));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for b in batches {
                    let _ = b.done.send(Err(msg.clone()));
                }
            }
        }
    }
}

fn apply(db: &Database, batches: &[Batch]) -> Result<Vec<usize>, redb::Error> {
    let tx = db.begin_write()?;
    let mut counts = Vec::with_capacity(batches.len());
    {
        let mut delivered = tx.open_table(DELIVERED)?;
        let mut parked = tx.open_table(PARKED)?;
        for b in batches {
            let mut n = 0;
            for op in &b.ops {
                match op {
                    Op::Put(k, e) => {
                        delivered.insert(k.as_str(), e.encode().as_slice())?;
                    }
                    Op::Park(id, v) => {
                        parked.insert(*id, v.as_slice())?;
                    }
                    Op::Unpark(id) => {
                        parked.remove(*id)?;
                    }
                    Op::Sweep(now, r) => {
                        let before = delivered.len()?;
                        delivered.retain(|k, v| {
                            Entry::decode(v)
                                .is_some_and(|e| !e.expired(*now, *r, k.contains("\0audit:")))
                        })?;
                        n += (before - delivered.len()?) as usize;
                    }
                }
            }
            counts.push(n);
        }
    }
    tx.commit()?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AlertState;

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new())
    }

    fn entry(state: AlertState, at: i64) -> Entry {
        Entry {
            state,
            delivered_ms: at,
            last_seen_ms: at,
            newest_violation_ms: 0,
        }
    }

    #[tokio::test]
    async fn records_survive_reopen_and_lock_excludes_a_second_process() {
        let dir = tempfile::tempdir().unwrap();
        {
            let l = Ledger::open(dir.path(), metrics()).unwrap();
            assert!(matches!(
                Ledger::open(dir.path(), metrics()),
                Err(LedgerError::Locked { .. })
            ));
            l.record("d", "a1", entry(AlertState::Active, 5))
                .await
                .unwrap();
            assert_eq!(
                l.get("d", "a1").unwrap(),
                Some(entry(AlertState::Active, 5))
            );
            assert_eq!(l.get("other", "a1").unwrap(), None);
        }
        // The writer thread holds the db until its channel closes; wait for it.
        let l = loop {
            match Ledger::open(dir.path(), metrics()) {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        assert_eq!(
            l.get("d", "a1").unwrap(),
            Some(entry(AlertState::Active, 5))
        );
    }

    #[tokio::test]
    async fn a_pending_record_is_visible_at_once_and_writes_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let l = Ledger::open(dir.path(), metrics()).unwrap();
            let active = entry(AlertState::Active, 1);
            let resolved = entry(AlertState::Resolved, 2);
            let first = l.record_pending("d", "k", active).await.unwrap();
            assert_eq!(l.get("d", "k").unwrap(), Some(active), "before the disk");
            let second = l.record_pending("d", "k", resolved).await.unwrap();
            assert_eq!(l.get("d", "k").unwrap(), Some(resolved));
            // The first write finishing must not hide the second one.
            first.await.unwrap();
            assert_eq!(l.get("d", "k").unwrap(), Some(resolved));
            second.await.unwrap();
            assert!(l.pending().is_empty());
            assert_eq!(l.get("d", "k").unwrap(), Some(resolved));
        }
        // On disk, in the order queued (once the old writer thread let go).
        let l = loop {
            match Ledger::open(dir.path(), metrics()) {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        assert_eq!(
            l.get("d", "k").unwrap(),
            Some(entry(AlertState::Resolved, 2))
        );
    }

    #[tokio::test]
    async fn concurrent_records_are_group_committed() {
        let dir = tempfile::tempdir().unwrap();
        let m = metrics();
        let l = Ledger::open(dir.path(), m.clone()).unwrap();
        let tasks: Vec<_> = (0..500)
            .map(|i| {
                let l = l.clone();
                tokio::spawn(async move {
                    l.record("d", &format!("a{i}"), entry(AlertState::Active, i))
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(l.len().unwrap(), 500);
        let batches = m.ledger_batch_size.get_sample_count();
        assert!(batches < 500, "{batches} transactions for 500 records");
    }

    #[tokio::test]
    async fn parks_in_order_and_unparks() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path(), metrics()).unwrap();
        let p = |key: &str| Parked {
            destination: "d".into(),
            target: String::new(),
            target_label: String::new(),
            key: key.into(),
            topic: "t".into(),
            partition: 0,
            offset: 1,
            message_key: Some(b"k".to_vec()),
            value: vec![0, 255, 1],
            attempts: 3,
            rounds: 0,
            first_error: "e1".into(),
            last_error: "e2".into(),
            parked_at_ms: 1,
            next_attempt_ms: 2,
        };
        let a = l.park(&p("a")).await.unwrap();
        let b = l.park(&p("b")).await.unwrap();
        let a2 = l.park(&p("a")).await.unwrap();
        assert!(a < b && b < a2);
        let all = l.parked().unwrap();
        assert_eq!(
            all.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![a, b, a2]
        );
        assert_eq!(all[0].1, p("a"));
        assert!(l.is_parked("d", "a"));
        l.unpark(a, &p("a"), Some(entry(AlertState::Active, 9)))
            .await
            .unwrap();
        assert!(
            l.is_parked("d", "a"),
            "a second delivery of a is still parked"
        );
        l.unpark(a2, &p("a"), None).await.unwrap();
        assert!(!l.is_parked("d", "a"));
        assert_eq!(l.get("d", "a").unwrap().unwrap().delivered_ms, 9);
    }

    async fn churn(l: &Ledger, prefix: &str) {
        let keys: Vec<String> = (0..500).map(|i| format!("{prefix}-{i}")).collect();
        let futs: Vec<_> = keys
            .iter()
            .map(|k| l.record("d", k, entry(AlertState::Active, 0)))
            .collect();
        for r in futures::future::join_all(futs).await {
            r.unwrap();
        }
    }

    #[tokio::test]
    async fn sweep_expires_by_last_seen_resolution_and_audit_age_and_the_file_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path(), metrics()).unwrap();
        let day = 86_400_000;
        let r = Retention {
            alerts: Duration::from_secs(30 * 86_400),
            resolved: Duration::from_secs(86_400),
            audit: Duration::from_secs(7 * 86_400),
        };
        l.record("d", "old", entry(AlertState::Active, 0))
            .await
            .unwrap();
        l.record("d", "fresh", entry(AlertState::Active, 20 * day))
            .await
            .unwrap();
        l.record("d", "resolved", entry(AlertState::Resolved, 20 * day))
            .await
            .unwrap();
        l.record("d", "audit:x", entry(AlertState::Active, 20 * day))
            .await
            .unwrap();
        assert_eq!(l.sweep(31 * day, r).await.unwrap(), 3);
        assert!(l.get("d", "fresh").unwrap().is_some());
        assert_eq!(l.len().unwrap(), 1);

        // Churn: 10,000 entries written and expired, round after round. The
        // file reuses freed pages: it levels off instead of growing with the
        // total churn (eight rounds would be four times round two if it grew).
        let mut sizes = Vec::new();
        for round in 0..8 {
            for chunk in 0..20 {
                churn(&l, &format!("c{round}-{chunk}")).await;
            }
            l.sweep(31 * day, r).await.unwrap();
            sizes.push(l.file_size());
        }
        println!("file size per round: {sizes:?}");
        assert!(sizes[7] < sizes[1] * 2, "file keeps growing: {sizes:?}");
        assert_eq!(l.len().unwrap(), 1);
    }
}
