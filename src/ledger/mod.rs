//! The ledger: what was delivered where, and the parked deliveries, in one
//! crash-safe redb file under `state_dir`.
//!
//! Writes go through one writer thread that commits them in batches (group
//! commit): a batch costs one fsync however many deliveries it records. A
//! delivery's record is visible at once (a pending overlay) and its worker
//! moves on; the message's offset waits until the record is durable.
//!
//! Parked deliveries are rows by id, with three indexes written in the same
//! transaction: by (destination, target, next attempt) for the rows due now,
//! by (destination, key) for the oldest row of an alert, and by
//! (destination, id) for the oldest rows of a destination. Every question the
//! delivery layer asks is a range read, never a scan of the whole table.
//! Reads that walk rows (pages, sweeps) are for blocking threads.

mod entry;
mod parked;
mod plan;

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

pub use entry::Entry;
pub use parked::{Parked, Row};
pub use plan::{idempotency_key, key_of, plan, Plan};

use crate::telemetry::Metrics;

/// Bumped when the file's layout changes; checked at open. Version 1 files
/// (no parked indexes) are upgraded in place.
pub const FORMAT_VERSION: u64 = 2;
/// The ledger's page cache (redb's default is 1 GiB).
const CACHE_BYTES: usize = 16 << 20;
const FILE_NAME: &str = "herald.redb";
/// The least time between the starts of two commits under load.
const COMMIT_SPACING: std::time::Duration = std::time::Duration::from_millis(5);
/// Unreadable rows of a version 1 file are indexed under this destination,
/// which no configured destination can be named (names are `[a-z0-9_-]`),
/// so they are dead-lettered as rows of a removed destination.
pub const UNREADABLE: &str = "(unreadable)";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// `<destination>\0<key>` → [`Entry`]; key = alert id or `audit:<sha256>`.
const DELIVERED: TableDefinition<&str, &[u8]> = TableDefinition::new("delivered");
/// Parking sequence number → [`Parked`] as JSON, without its value …
const PARKED: TableDefinition<u64, &[u8]> = TableDefinition::new("parked");
/// … which is here, as the raw bytes of the message.
const PARKED_VALUES: TableDefinition<u64, &[u8]> = TableDefinition::new("parked_values");
/// (destination, target, next attempt ms, id): which rows are due.
const PARKED_DUE: TableDefinition<(&str, &str, i64, u64), ()> = TableDefinition::new("parked_due");
/// (destination, key, id): the parked rows of one alert, oldest first.
const PARKED_KEYS: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("parked_keys");
/// (destination, id) → when it was parked (ms): a destination's rows,
/// oldest first, with their age at hand (expiry reads no row).
const PARKED_AGE: TableDefinition<(&str, u64), i64> = TableDefinition::new("parked_age");

/// What the ledger holds for one key at one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyState {
    /// What was last delivered.
    pub delivered: Option<Entry>,
    /// The oldest parked delivery's row, if one is parked (or about to be).
    pub oldest_parked: Option<u64>,
}

/// How long entries are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// After the alert was last seen.
    pub alerts: std::time::Duration,
    /// After a RESOLVED was delivered or seen.
    pub resolved: std::time::Duration,
    /// Audit keys.
    pub audit: std::time::Duration,
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
    #[error("ledger {path}: format version {found}, this herald reads version {FORMAT_VERSION} (and upgrades 1); see the README's upgrade notes")]
    Version { path: String, found: u64 },
    #[error("ledger store failure: {0}")]
    Store(String),
}

fn store<E: std::fmt::Display>(e: E) -> LedgerError {
    LedgerError::Store(e.to_string())
}

/// Where a parked row is indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Index {
    destination: String,
    target: String,
    key: String,
    next_ms: i64,
    parked_at_ms: i64,
}

impl Index {
    fn of(p: &Parked) -> Index {
        Index {
            destination: p.destination.clone(),
            target: p.target.clone(),
            key: p.key.clone(),
            next_ms: p.next_attempt_ms,
            parked_at_ms: p.parked_at_ms,
        }
    }
}

enum Op {
    Put(String, Entry),
    Park {
        id: u64,
        row: Vec<u8>,
        value: Vec<u8>,
        index: Index,
    },
    Repark {
        id: u64,
        row: Vec<u8>,
        old: Index,
        new: Index,
    },
    Unpark {
        id: u64,
        index: Index,
    },
    /// An unreadable row: removed with every index entry naming its id.
    Drop(u64),
    Sweep(i64, Retention),
    /// A write that proves the store works again.
    Probe,
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

/// The open database, shared by readers and the writer thread; `None` while
/// it is being reopened after a store failure (redb refuses every write
/// after an I/O error until the file is opened again).
type Slot = Arc<std::sync::RwLock<Option<Arc<Database>>>>;

fn current(slot: &Slot) -> Option<Arc<Database>> {
    slot.read().unwrap_or_else(|p| p.into_inner()).clone()
}

struct Inner {
    db: Slot,
    path: PathBuf,
    writer: std::sync::mpsc::SyncSender<Batch>,
    healthy: AtomicBool,
    next_park: Mutex<u64>,
    /// Parked rows per destination (bounded by the destinations that ever
    /// parked something, not by the rows).
    parked_counts: Mutex<HashMap<String, u64>>,
    /// Ids reserved for deliveries being parked, by joined key: the key
    /// counts as parked from the reservation on, in id order.
    reserved: Mutex<HashMap<String, std::collections::BTreeSet<u64>>>,
    /// Rows delivered whose removal is queued but not yet durable, by joined
    /// key: they no longer hold back the key's next delivery.
    unparking: Mutex<HashMap<String, std::collections::BTreeSet<u64>>>,
    /// Entries handed to the writer but not yet durable, by joined key:
    /// `get` sees them, so the next delivery of a key plans on the record
    /// its predecessor is still writing.
    pending: Mutex<HashMap<String, Entry>>,
    _lock: std::fs::File,
}

fn join_key(destination: &str, key: &str) -> String {
    format!("{destination}\0{key}")
}

/// Inserts a row's three index entries.
fn index_insert(
    due: &mut redb::Table<(&str, &str, i64, u64), ()>,
    keys: &mut redb::Table<(&str, &str, u64), ()>,
    age: &mut redb::Table<(&str, u64), i64>,
    id: u64,
    i: &Index,
) -> Result<(), redb::Error> {
    due.insert(
        (i.destination.as_str(), i.target.as_str(), i.next_ms, id),
        (),
    )?;
    keys.insert((i.destination.as_str(), i.key.as_str(), id), ())?;
    age.insert((i.destination.as_str(), id), i.parked_at_ms)?;
    Ok(())
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
        // the parked indexes) is far smaller, and RSS is what operators watch.
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(store)?;
        let (next_park, parked_counts) = Self::prepare(&db, &path)?;
        let db: Slot = Arc::new(std::sync::RwLock::new(Some(Arc::new(db))));
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
                parked_counts: Mutex::new(parked_counts),
                reserved: Mutex::new(HashMap::new()),
                unparking: Mutex::new(HashMap::new()),
                pending: Mutex::new(HashMap::new()),
                _lock: lock,
            }),
        })
    }

    /// Creates or checks the tables, upgrades a version 1 file, and counts
    /// the parked rows.
    fn prepare(db: &Database, path: &Path) -> Result<(u64, HashMap<String, u64>), LedgerError> {
        let tx = db.begin_write().map_err(store)?;
        {
            let mut meta = tx.open_table(META).map_err(store)?;
            let found = meta
                .get("format_version")
                .map_err(store)?
                .map(|v| v.value());
            tx.open_table(DELIVERED).map_err(store)?;
            let mut values = tx.open_table(PARKED_VALUES).map_err(store)?;
            let mut parked = tx.open_table(PARKED).map_err(store)?;
            let mut due = tx.open_table(PARKED_DUE).map_err(store)?;
            let mut keys = tx.open_table(PARKED_KEYS).map_err(store)?;
            let mut age = tx.open_table(PARKED_AGE).map_err(store)?;
            match found {
                Some(FORMAT_VERSION) => {}
                None | Some(1) => {
                    // A new file, or version 1: index every row there is,
                    // and move each value out of its row's JSON.
                    let mut ids = Vec::new();
                    for row in parked.iter().map_err(store)? {
                        ids.push(row.map_err(store)?.0.value());
                    }
                    for id in ids {
                        let Some(bytes) =
                            parked.get(id).map_err(store)?.map(|v| v.value().to_vec())
                        else {
                            continue;
                        };
                        let index = match Row::decode(&bytes, None) {
                            Row::Parked(p) => {
                                values.insert(id, p.value.as_slice()).map_err(store)?;
                                parked.insert(id, p.encode().as_slice()).map_err(store)?;
                                Index::of(&p)
                            }
                            Row::Unreadable(_) => Index {
                                destination: UNREADABLE.into(),
                                target: String::new(),
                                key: String::new(),
                                next_ms: 0,
                                parked_at_ms: 0,
                            },
                        };
                        index_insert(&mut due, &mut keys, &mut age, id, &index).map_err(store)?;
                    }
                    meta.insert("format_version", FORMAT_VERSION)
                        .map_err(store)?;
                    if found == Some(1) {
                        tracing::info!(path = %path.display(), "ledger upgraded from format 1 to 2 (parked indexes)");
                    }
                }
                Some(v) => {
                    return Err(LedgerError::Version {
                        path: path.display().to_string(),
                        found: v,
                    })
                }
            }
        }
        tx.commit().map_err(store)?;
        let read = db.begin_read().map_err(store)?;
        let next = read
            .open_table(PARKED)
            .map_err(store)?
            .last()
            .map_err(store)?
            .map_or(1, |(id, _)| id.value() + 1);
        let mut counts: HashMap<String, u64> = HashMap::new();
        for row in read
            .open_table(PARKED_AGE)
            .map_err(store)?
            .iter()
            .map_err(store)?
        {
            let (k, _) = row.map_err(store)?;
            *counts.entry(k.value().0.to_string()).or_default() += 1;
        }
        Ok((next, counts))
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// False after a store failure; `/readyz` reports it, and herald stops
    /// dispatching until [`Ledger::probe`] finds the store working again.
    pub fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    fn fail(&self, e: impl std::fmt::Display) -> LedgerError {
        if self.inner.healthy.swap(false, Ordering::Relaxed) {
            tracing::error!(
                error = %e,
                path = %self.inner.path.display(),
                "ledger store failure: dispatch pauses until the store works again"
            );
        }
        LedgerError::Store(e.to_string())
    }

    /// Tries one durable write (through the writer, after everything queued
    /// before it), reopening the file when redb refuses writes after an
    /// earlier I/O error. On success the ledger is healthy again. Returns
    /// whether it is.
    pub async fn probe(&self) -> bool {
        let worked = match self.enqueue(vec![Op::Probe], true).await {
            Ok(wait) => matches!(wait.await, Ok(Ok(_))),
            Err(_) => false,
        };
        let worked = worked || {
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.reopen())
                .await
                .unwrap_or(false)
        };
        if worked && !self.inner.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!(path = %self.inner.path.display(), "ledger store works again: dispatch resumes");
        }
        worked
    }

    /// Closes and opens the file again (redb repairs it if it must), then
    /// writes the probe. Blocking.
    fn reopen(&self) -> bool {
        let mut slot = self.inner.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.take() {
            // Readers and the writer hold clones only for one transaction.
            let deadline = Instant::now() + std::time::Duration::from_secs(5);
            while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if Arc::strong_count(&old) > 1 {
                *slot = Some(old);
                return false;
            }
        }
        let opened = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&self.inner.path);
        let db = match opened {
            Ok(db) => db,
            Err(e) => {
                tracing::warn!(error = %e, "ledger: reopening after a store failure did not work yet");
                return false;
            }
        };
        let probe = || -> Result<(), redb::Error> {
            let tx = db.begin_write()?;
            tx.open_table(META)?.insert("probe", 1)?;
            tx.commit()?;
            Ok(())
        };
        let worked = probe().is_ok();
        *slot = Some(Arc::new(db));
        worked
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, LedgerError> {
        let db =
            current(&self.inner.db).ok_or_else(|| self.fail("the ledger is being reopened"))?;
        let tx = db.begin_read().map_err(|e| self.fail(e))?;
        f(&tx).map_err(|e| self.fail(e))
    }

    /// What was last delivered for `key` at `destination`.
    pub fn get(&self, destination: &str, key: &str) -> Result<Option<Entry>, LedgerError> {
        self.key_state(destination, key).map(|s| s.delivered)
    }

    /// The oldest parked row of `key` at `destination`, if any: deliveries
    /// of one alert go in order, so only that one may be tried.
    pub fn oldest_of_key(&self, destination: &str, key: &str) -> Result<Option<u64>, LedgerError> {
        self.key_state(destination, key).map(|s| s.oldest_parked)
    }

    /// Both of the above in one read: what a delivery of `key` consults.
    pub fn key_state(&self, destination: &str, key: &str) -> Result<KeyState, LedgerError> {
        let joined = join_key(destination, key);
        let pending = self.pending().get(&joined).copied();
        let reserved = self
            .reserved()
            .get(&joined)
            .and_then(|ids| ids.first().copied());
        let unparking = self
            .inner
            .unparking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&joined)
            .cloned()
            .unwrap_or_default();
        let (stored, first_parked) = self.read(|tx| {
            let stored = match pending {
                Some(_) => None,
                None => tx
                    .open_table(DELIVERED)?
                    .get(joined.as_str())?
                    .and_then(|v| Entry::decode(v.value())),
            };
            let t = tx.open_table(PARKED_KEYS)?;
            let mut first = None;
            for row in t.range((destination, key, 0u64)..=(destination, key, u64::MAX))? {
                let id = row?.0.value().2;
                if !unparking.contains(&id) {
                    first = Some(id);
                    break;
                }
            }
            Ok((stored, first))
        })?;
        Ok(KeyState {
            delivered: pending.or(stored),
            oldest_parked: match (reserved, first_parked) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        })
    }

    /// Marks row `id` of `joined` as being removed (or no longer).
    fn unparking_mark(&self, joined: &str, id: u64, on: bool) {
        let mut map = self
            .inner
            .unparking
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if on {
            map.entry(joined.to_string()).or_default().insert(id);
        } else if let Some(ids) = map.get_mut(joined) {
            ids.remove(&id);
            if ids.is_empty() {
                map.remove(joined);
            }
        }
    }

    fn reserved(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, std::collections::BTreeSet<u64>>> {
        self.inner
            .reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves the id of a delivery about to be parked. Synchronous, so ids
    /// follow the order deliveries are dispatched in, and the key counts as
    /// parked at once: a later delivery of it waits behind this one.
    pub fn reserve(&self, destination: &str, key: &str) -> u64 {
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
        self.reserved()
            .entry(join_key(destination, key))
            .or_default()
            .insert(id);
        id
    }

    fn release(&self, id: u64, destination: &str, key: &str) {
        let joined = join_key(destination, key);
        let mut reserved = self.reserved();
        if let Some(ids) = reserved.get_mut(&joined) {
            ids.remove(&id);
            if ids.is_empty() {
                reserved.remove(&joined);
            }
        }
    }

    /// Whether a delivery of `key` is parked at `destination`.
    pub fn is_parked(&self, destination: &str, key: &str) -> Result<bool, LedgerError> {
        self.oldest_of_key(destination, key).map(|o| o.is_some())
    }

    /// One parked row.
    pub fn row(&self, id: u64) -> Result<Option<Row>, LedgerError> {
        Ok(self.rows(&[id])?.pop().map(|(_, r)| r))
    }

    /// Parked rows `ids` that still exist, in one read.
    pub fn rows(&self, ids: &[u64]) -> Result<Vec<(u64, Row)>, LedgerError> {
        self.read(|tx| {
            let t = tx.open_table(PARKED)?;
            let values = tx.open_table(PARKED_VALUES)?;
            let mut out = Vec::with_capacity(ids.len());
            for &id in ids {
                let Some(row) = t.get(id)? else { continue };
                let value = values.get(id)?;
                out.push((
                    id,
                    Row::decode(row.value(), value.as_ref().map(|v| v.value())),
                ));
            }
            Ok(out)
        })
    }

    /// Targets of `destination` with a row due at `now_ms`, at most `max`.
    pub fn due_targets(
        &self,
        destination: &str,
        now_ms: i64,
        max: usize,
    ) -> Result<Vec<String>, LedgerError> {
        self.read(|tx| {
            let t = tx.open_table(PARKED_DUE)?;
            let mut out = Vec::new();
            let mut after: Option<String> = None;
            while out.len() < max {
                let lower = match &after {
                    None => Bound::Included((destination, "", i64::MIN, 0u64)),
                    Some(t) => Bound::Excluded((destination, t.as_str(), i64::MAX, u64::MAX)),
                };
                let Some(first) = t
                    .range::<(&str, &str, i64, u64)>((lower, Bound::Unbounded))?
                    .next()
                    .transpose()?
                else {
                    break;
                };
                let (dest, target, next, _) = first.0.value();
                if dest != destination {
                    break;
                }
                if next <= now_ms {
                    out.push(target.to_string());
                }
                after = Some(target.to_string());
            }
            Ok(out)
        })
    }

    /// Rows of (`destination`, `target`) due at `now_ms`, soonest first, at
    /// most `max`.
    pub fn due(
        &self,
        destination: &str,
        target: &str,
        now_ms: i64,
        max: usize,
    ) -> Result<Vec<u64>, LedgerError> {
        self.due_taking(destination, target, now_ms, max, |_| true)
    }

    /// Like `due`, keeping only the rows `take` accepts (it claims them, say):
    /// rows already being tried, still indexed until their removal is
    /// durable, do not fill the page. Looks at most `16 × max + 1024` rows.
    pub fn due_taking(
        &self,
        destination: &str,
        target: &str,
        now_ms: i64,
        max: usize,
        mut take: impl FnMut(u64) -> bool,
    ) -> Result<Vec<u64>, LedgerError> {
        self.read(|tx| {
            let t = tx.open_table(PARKED_DUE)?;
            let mut out = Vec::new();
            let range = t.range(
                (destination, target, i64::MIN, 0u64)..=(destination, target, now_ms, u64::MAX),
            )?;
            for row in range.take(max.saturating_mul(16).saturating_add(1024)) {
                let id = row?.0.value().3;
                if take(id) {
                    out.push(id);
                    if out.len() >= max {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }

    /// The rows of (`destination`, `target`).
    pub fn count_target(&self, destination: &str, target: &str) -> Result<u64, LedgerError> {
        self.read(|tx| {
            let t = tx.open_table(PARKED_DUE)?;
            let mut n = 0;
            for row in t.range(
                (destination, target, i64::MIN, 0u64)..=(destination, target, i64::MAX, u64::MAX),
            )? {
                row?;
                n += 1;
            }
            Ok(n)
        })
    }

    /// A destination's oldest rows (by parking order), at most `max`.
    pub fn oldest(&self, destination: &str, max: usize) -> Result<Vec<u64>, LedgerError> {
        Ok(self
            .oldest_with_age(destination, max)?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// A destination's oldest rows with when each was parked (ms), at most
    /// `max`: from the index alone.
    pub fn oldest_with_age(
        &self,
        destination: &str,
        max: usize,
    ) -> Result<Vec<(u64, i64)>, LedgerError> {
        self.read(|tx| {
            let t = tx.open_table(PARKED_AGE)?;
            let mut out = Vec::new();
            for row in t.range((destination, 0u64)..=(destination, u64::MAX))? {
                let (k, v) = row?;
                out.push((k.value().1, v.value()));
                if out.len() >= max {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Destinations with parked rows.
    pub fn parked_destinations(&self) -> Vec<String> {
        let counts = self.counts();
        let mut v: Vec<String> = counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(d, _)| d.clone())
            .collect();
        v.sort();
        v
    }

    /// Parked rows of `destination`.
    pub fn parked_count(&self, destination: &str) -> u64 {
        self.counts().get(destination).copied().unwrap_or(0)
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.inner
            .parked_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Parked rows after `after` (an id), oldest first, at most `max`: the
    /// admin API's pages (without their values).
    pub fn page(&self, after: u64, max: usize) -> Result<Vec<(u64, Row)>, LedgerError> {
        self.read(|tx| {
            let t = tx.open_table(PARKED)?;
            let mut out = Vec::new();
            for row in t.range((Bound::Excluded(after), Bound::Unbounded))? {
                let (id, v) = row?;
                out.push((id.value(), Row::decode(v.value(), None)));
                if out.len() >= max {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Waits until every write queued before it is durable (the writer
    /// keeps their order).
    pub async fn flush(&self) -> Result<(), LedgerError> {
        self.submit(Vec::new()).await.map(|_| ())
    }

    async fn submit(&self, ops: Vec<Op>) -> Result<usize, LedgerError> {
        let wait = self.enqueue(ops, false).await?;
        self.durable(wait).await
    }

    /// Hands a batch to the writer thread, in call order; returns what
    /// resolves once the batch is durable.
    async fn enqueue(
        &self,
        ops: Vec<Op>,
        even_if_failed: bool,
    ) -> Result<oneshot::Receiver<Result<usize, String>>, LedgerError> {
        if !even_if_failed && !self.healthy() {
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
        self.write_pending(joined.clone(), entry, vec![Op::Put(joined, entry)])
            .await
    }

    /// Removes parked row `id` and records `entry` for its key, without
    /// waiting for the disk: `get` sees the entry at once; the returned
    /// future resolves once both are durable (keep the row from being tried
    /// again until then).
    pub async fn unpark_pending(
        &self,
        id: u64,
        p: &Parked,
        entry: Entry,
    ) -> Result<
        impl std::future::Future<Output = Result<(), LedgerError>> + Send + 'static,
        LedgerError,
    > {
        let joined = join_key(&p.destination, &p.key);
        let ops = vec![
            Op::Unpark {
                id,
                index: Index::of(p),
            },
            Op::Put(joined.clone(), entry),
        ];
        self.unparking_mark(&joined, id, true);
        let durable = match self.write_pending(joined.clone(), entry, ops).await {
            Ok(d) => d,
            Err(e) => {
                self.unparking_mark(&joined, id, false);
                return Err(e);
            }
        };
        let (this, destination) = (self.clone(), p.destination.clone());
        Ok(async move {
            let result = durable.await;
            this.unparking_mark(&joined, id, false);
            result?;
            if let Some(n) = this.counts().get_mut(&destination) {
                *n = n.saturating_sub(1);
            }
            Ok(())
        })
    }

    /// Queues `ops`, which record `entry` under `joined`, with the entry
    /// visible to `get` at once (a pending overlay, removed once durable).
    async fn write_pending(
        &self,
        joined: String,
        entry: Entry,
        ops: Vec<Op>,
    ) -> Result<
        impl std::future::Future<Output = Result<(), LedgerError>> + Send + 'static,
        LedgerError,
    > {
        self.pending().insert(joined.clone(), entry);
        let queued = self.enqueue(ops, false).await;
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
        let id = self.reserve(&p.destination, &p.key);
        self.park_reserved(id, p).await.map(|_| id)
    }

    /// Parks a delivery durably under an id from [`Ledger::reserve`].
    pub async fn park_reserved(&self, id: u64, p: &Parked) -> Result<(), LedgerError> {
        let written = self
            .submit(vec![Op::Park {
                id,
                row: p.encode(),
                value: p.value.clone(),
                index: Index::of(p),
            }])
            .await;
        self.release(id, &p.destination, &p.key);
        written?;
        *self.counts().entry(p.destination.clone()).or_default() += 1;
        Ok(())
    }

    /// Replaces parked row `id` (it was `old`) after a failed retry.
    pub async fn repark(&self, id: u64, old: &Parked, new: &Parked) -> Result<(), LedgerError> {
        self.submit(vec![Op::Repark {
            id,
            row: new.encode(),
            old: Index::of(old),
            new: Index::of(new),
        }])
        .await
        .map(|_| ())
    }

    /// Removes parked row `id`, recording `entry` for its key in the same
    /// transaction.
    pub async fn unpark(
        &self,
        id: u64,
        p: &Parked,
        entry: Option<Entry>,
    ) -> Result<(), LedgerError> {
        let mut ops = vec![Op::Unpark {
            id,
            index: Index::of(p),
        }];
        if let Some(e) = entry {
            ops.push(Op::Put(join_key(&p.destination, &p.key), e));
        }
        self.submit(ops).await?;
        if let Some(n) = self.counts().get_mut(&p.destination) {
            *n = n.saturating_sub(1);
        }
        Ok(())
    }

    /// Removes an unreadable row of `destination` (after it was dead-lettered).
    pub async fn drop_row(&self, id: u64, destination: &str) -> Result<(), LedgerError> {
        self.submit(vec![Op::Drop(id)]).await?;
        if let Some(n) = self.counts().get_mut(destination) {
            *n = n.saturating_sub(1);
        }
        Ok(())
    }

    /// Number of delivery entries.
    pub fn len(&self) -> Result<u64, LedgerError> {
        self.read(|tx| Ok(tx.open_table(DELIVERED)?.len()?))
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

    /// Makes every later write fail, as a full disk does (unit tests).
    #[cfg(test)]
    pub(crate) fn break_for_test(&self) {
        let _ = self.fail("broken by a test");
    }
}

/// The writer thread: takes every batch waiting, commits them in one durable
/// transaction, then answers each.
fn writer(slot: Slot, rx: std::sync::mpsc::Receiver<Batch>, metrics: Arc<Metrics>) {
    let mut last: Option<Instant> = None;
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        // Under load, commits start at most every COMMIT_SPACING and take
        // what arrived meanwhile: fewer, larger transactions (each costs a
        // sync and a copy of every page it touches). A write after a quiet
        // spell commits at once.
        let until = last.map(|t| t + COMMIT_SPACING);
        while batches.len() < 1024 {
            let next = match until {
                Some(until) => match until.checked_duration_since(Instant::now()) {
                    Some(left) => rx.recv_timeout(left).ok(),
                    None => rx.try_recv().ok(),
                },
                None => rx.try_recv().ok(),
            };
            match next {
                Some(b) => batches.push(b),
                None => break,
            }
        }
        let started = Instant::now();
        last = Some(started);
        let result = match current(&slot) {
            Some(db) => apply(&db, &batches).map_err(|e| e.to_string()),
            None => Err("the ledger is being reopened".to_string()),
        };
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
            Err(msg) => {
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
        let mut values = tx.open_table(PARKED_VALUES)?;
        let mut due = tx.open_table(PARKED_DUE)?;
        let mut keys = tx.open_table(PARKED_KEYS)?;
        let mut age = tx.open_table(PARKED_AGE)?;
        let mut meta = tx.open_table(META)?;
        for b in batches {
            let mut n = 0;
            for op in &b.ops {
                match op {
                    Op::Put(k, e) => {
                        delivered.insert(k.as_str(), e.encode().as_slice())?;
                    }
                    Op::Park {
                        id,
                        row,
                        value,
                        index,
                    } => {
                        parked.insert(*id, row.as_slice())?;
                        values.insert(*id, value.as_slice())?;
                        index_insert(&mut due, &mut keys, &mut age, *id, index)?;
                    }
                    Op::Repark { id, row, old, new } => {
                        parked.insert(*id, row.as_slice())?;
                        due.remove((
                            old.destination.as_str(),
                            old.target.as_str(),
                            old.next_ms,
                            *id,
                        ))?;
                        due.insert(
                            (
                                new.destination.as_str(),
                                new.target.as_str(),
                                new.next_ms,
                                *id,
                            ),
                            (),
                        )?;
                    }
                    Op::Unpark { id, index: i } => {
                        parked.remove(*id)?;
                        values.remove(*id)?;
                        due.remove((i.destination.as_str(), i.target.as_str(), i.next_ms, *id))?;
                        keys.remove((i.destination.as_str(), i.key.as_str(), *id))?;
                        age.remove((i.destination.as_str(), *id))?;
                    }
                    Op::Drop(id) => {
                        parked.remove(*id)?;
                        values.remove(*id)?;
                        due.retain(|k, _| k.3 != *id)?;
                        keys.retain(|k, _| k.2 != *id)?;
                        age.retain(|k, _| k.1 != *id)?;
                    }
                    Op::Sweep(now, r) => {
                        let before = delivered.len()?;
                        delivered.retain(|k, v| {
                            Entry::decode(v)
                                .is_some_and(|e| !e.expired(*now, *r, k.contains("\0audit:")))
                        })?;
                        n += (before - delivered.len()?) as usize;
                    }
                    Op::Probe => {
                        meta.insert("probe", 1)?;
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
    use std::time::Duration;

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
            target_shown: String::new(),
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
        let all = l.page(0, 10).unwrap();
        assert_eq!(
            all.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![a, b, a2]
        );
        assert_eq!(l.row(a).unwrap(), Some(Row::Parked(Box::new(p("a")))));
        let listed = match &all[0].1 {
            Row::Parked(p) => p.clone(),
            Row::Unreadable(_) => panic!("unreadable"),
        };
        assert!(listed.value.is_empty(), "pages carry no values");
        assert_eq!(l.page(a, 1).unwrap()[0].0, b, "pages after an id");
        assert!(l.is_parked("d", "a").unwrap());
        assert_eq!(l.oldest_of_key("d", "a").unwrap(), Some(a));
        assert_eq!(l.parked_count("d"), 3);
        l.unpark(a, &p("a"), Some(entry(AlertState::Active, 9)))
            .await
            .unwrap();
        assert_eq!(
            l.oldest_of_key("d", "a").unwrap(),
            Some(a2),
            "a second delivery of a is still parked"
        );
        l.unpark(a2, &p("a"), None).await.unwrap();
        assert!(!l.is_parked("d", "a").unwrap());
        assert_eq!(l.get("d", "a").unwrap().unwrap().delivered_ms, 9);
        assert_eq!(l.parked_count("d"), 1);
    }

    fn parked(target: &str, key: &str, next: i64) -> Parked {
        Parked {
            destination: "d".into(),
            target: target.into(),
            target_shown: String::new(),
            key: key.into(),
            topic: "t".into(),
            partition: 0,
            offset: 1,
            message_key: None,
            value: b"{}".to_vec(),
            attempts: 1,
            rounds: 0,
            first_error: "e".into(),
            last_error: "e".into(),
            parked_at_ms: 0,
            next_attempt_ms: next,
        }
    }

    #[tokio::test]
    async fn due_rows_are_found_by_target_and_time_without_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path(), metrics()).unwrap();
        let a1 = l.park(&parked("", "a", 100)).await.unwrap();
        let b1 = l.park(&parked("https://x/1", "b", 50)).await.unwrap();
        let c1 = l.park(&parked("https://x/2", "c", 500)).await.unwrap();
        let a2 = l.park(&parked("", "a2", 90)).await.unwrap();
        assert_eq!(l.due_targets("d", 99, 10).unwrap(), ["", "https://x/1"]);
        assert_eq!(
            l.due_targets("d", 1000, 10).unwrap(),
            ["", "https://x/1", "https://x/2"]
        );
        assert_eq!(l.due_targets("d", 1000, 2).unwrap().len(), 2);
        assert!(l.due_targets("other", 1000, 10).unwrap().is_empty());
        assert_eq!(l.due("d", "", 1000, 10).unwrap(), [a2, a1], "soonest first");
        assert_eq!(l.due("d", "", 95, 10).unwrap(), [a2]);
        assert_eq!(l.count_target("d", "https://x/1").unwrap(), 1);
        // A retry that fails moves its row later.
        l.repark(
            b1,
            &parked("https://x/1", "b", 50),
            &parked("https://x/1", "b", 700),
        )
        .await
        .unwrap();
        assert!(l.due("d", "https://x/1", 600, 10).unwrap().is_empty());
        assert_eq!(l.due("d", "https://x/1", 700, 10).unwrap(), [b1]);
        assert_eq!(l.oldest("d", 2).unwrap(), [a1, b1]);
        assert_eq!(l.parked_destinations(), ["d"]);
        let _ = c1;
    }

    #[tokio::test]
    async fn a_version_1_file_is_indexed_and_unreadable_rows_are_kept_for_the_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = redb::Database::create(dir.path().join(FILE_NAME)).unwrap();
            let tx = db.begin_write().unwrap();
            {
                tx.open_table(META)
                    .unwrap()
                    .insert("format_version", 1)
                    .unwrap();
                // Version 1 kept the value in the row's JSON, base64.
                let mut v1: serde_json::Value =
                    serde_json::from_slice(&parked("", "k", 5).encode()).unwrap();
                v1["value"] = "eyJ2MSI6MX0=".into(); // {"v1":1}
                let mut t = tx.open_table(PARKED).unwrap();
                t.insert(3u64, serde_json::to_vec(&v1).unwrap().as_slice())
                    .unwrap();
                t.insert(4u64, b"{not json".as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        let l = Ledger::open(dir.path(), metrics()).unwrap();
        assert_eq!(l.due("d", "", 10, 10).unwrap(), [3]);
        // The value moved out of the JSON, and a retry's new row keeps it.
        let Some(Row::Parked(old)) = l.row(3).unwrap() else {
            panic!("row 3 does not read")
        };
        assert_eq!(old.value, br#"{"v1":1}"#);
        let mut new = (*old).clone();
        new.next_attempt_ms = 9;
        new.value.clear(); // a retry's row as the machine writes it
        l.repark(3, &old, &new).await.unwrap();
        let Some(Row::Parked(again)) = l.row(3).unwrap() else {
            panic!("row 3 does not read after a repark")
        };
        assert_eq!(again.value, br#"{"v1":1}"#);
        assert_eq!(l.oldest(UNREADABLE, 10).unwrap(), [4]);
        assert_eq!(
            l.row(4).unwrap(),
            Some(Row::Unreadable(b"{not json".to_vec()))
        );
        assert_eq!(l.parked_destinations(), [UNREADABLE, "d"]);
        l.drop_row(4, UNREADABLE).await.unwrap();
        assert!(l.oldest(UNREADABLE, 10).unwrap().is_empty());
        assert_eq!(l.row(4).unwrap(), None);
        let next = l.park(&parked("", "k2", 5)).await.unwrap();
        assert_eq!(next, 5, "ids continue after the last row");
    }

    #[tokio::test]
    async fn a_failed_store_refuses_writes_until_a_probe_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path(), metrics()).unwrap();
        l.break_for_test();
        assert!(!l.healthy());
        assert!(l
            .record("d", "x", entry(AlertState::Active, 1))
            .await
            .is_err());
        assert!(l.probe().await, "the disk works: the probe heals it");
        assert!(l.healthy());
        l.record("d", "x", entry(AlertState::Active, 1))
            .await
            .unwrap();
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
