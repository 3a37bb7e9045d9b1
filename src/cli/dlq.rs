//! `herald dlq list|replay` and `herald parked list`.

use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::deadletter::DeadLetter;
use crate::ledger::{Ledger, LedgerError};
use crate::source;

/// The header that restricts a replayed message to one destination.
pub const REPLAY_HEADER: &str = "herald-replay-destination";
/// With [`REPLAY_HEADER`]: deliver even if the destination's routing
/// (policy.notifiers, filters) refuses the message (`dlq replay --force`).
pub const REPLAY_FORCE_HEADER: &str = "herald-replay-force";

/// A dead letter and the Kafka key it was written with.
pub struct Stored {
    pub record: DeadLetter,
    pub key: Option<Vec<u8>>,
}

/// Reads every record of the dead-letter topic, from the start to its current end.
pub fn read_topic(config: &Config) -> anyhow::Result<Vec<Stored>> {
    let k = &config.kafka;
    let mut c = source::client_config(k);
    c.set("group.id", "herald-dlq-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = c.create()?;
    let md = consumer.fetch_metadata(Some(&k.dead_letter_topic), Duration::from_secs(10))?;
    let topic = md
        .topics()
        .iter()
        .find(|t| t.name() == k.dead_letter_topic)
        .ok_or_else(|| anyhow::anyhow!("topic {:?} not found", k.dead_letter_topic))?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = std::collections::HashMap::new();
    for p in topic.partitions() {
        let (low, high) =
            consumer.fetch_watermarks(&k.dead_letter_topic, p.id(), Duration::from_secs(10))?;
        if high > low {
            tpl.add_partition_offset(&k.dead_letter_topic, p.id(), Offset::Offset(low))?;
            remaining.insert(p.id(), high);
        }
    }
    let mut out = Vec::new();
    if remaining.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() && Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg?;
        if remaining
            .get(&msg.partition())
            .is_some_and(|high| msg.offset() + 1 >= *high)
        {
            remaining.remove(&msg.partition());
        }
        let Some(payload) = msg.payload() else {
            continue;
        };
        match serde_json::from_slice::<DeadLetter>(payload) {
            Ok(record) => out.push(Stored {
                record,
                key: msg.key().map(<[u8]>::to_vec),
            }),
            Err(e) => eprintln!(
                "skipping a record at offset {} that is not a dead letter: {e}",
                msg.offset()
            ),
        }
    }
    Ok(out)
}

/// Reads a `dead_letter_file` (JSONL).
pub fn read_file(path: &Path) -> anyhow::Result<Vec<Stored>> {
    let f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let record: DeadLetter = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
        out.push(Stored { record, key: None });
    }
    Ok(out)
}

/// One line per record: time, kind, destination, origin, reason.
pub fn print_list(records: &[Stored], json: bool) {
    for s in records {
        let r = &s.record;
        if json {
            println!("{}", serde_json::to_string(r).expect("serialises"));
        } else {
            println!(
                "{}\t{}\t{}\t{}/{}@{}\tattempts={}\t{}",
                r.time,
                r.kind,
                r.destination.as_deref().unwrap_or("-"),
                r.topic,
                r.partition,
                r.offset,
                r.attempts,
                r.reason
            );
        }
    }
}

/// Produces the original value of each `delivery_failed` record for
/// `destination` (at or after `since`) back to its source topic, marked for
/// that destination only. The ledger keeps destinations that already have it
/// from receiving it twice. Returns how many were replayed.
pub async fn replay(
    config: &Config,
    records: Vec<Stored>,
    destination: &str,
    since: Option<chrono::DateTime<chrono::Utc>>,
    force: bool,
) -> anyhow::Result<usize> {
    let producer: FutureProducer = source::producer(&config.kafka)?;
    let mut n = 0;
    for s in records {
        let r = &s.record;
        if r.kind != "delivery_failed" || r.destination.as_deref() != Some(destination) {
            continue;
        }
        if let Some(since) = since {
            match chrono::DateTime::parse_from_rfc3339(&r.time) {
                Ok(t) if t >= since => {}
                _ => continue,
            }
        }
        if r.value_truncated {
            eprintln!(
                "skipped {}/{}@{}: the record holds only the first bytes of the value ({} bytes, sha256 {}); replay it from its source topic",
                r.topic,
                r.partition,
                r.offset,
                r.value_size.unwrap_or(0),
                r.value_sha256.as_deref().unwrap_or("?")
            );
            continue;
        }
        let value: Vec<u8> = match (&r.value, &r.value_base64) {
            (Some(v), _) => v.clone().into_bytes(),
            (None, Some(b)) => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(b)?
            }
            (None, None) => continue,
        };
        let mut headers = OwnedHeaders::new().insert(Header {
            key: REPLAY_HEADER,
            value: Some(destination),
        });
        if force {
            headers = headers.insert(Header {
                key: REPLAY_FORCE_HEADER,
                value: Some("true"),
            });
        }
        let mut rec = FutureRecord::<[u8], [u8]>::to(&r.topic)
            .payload(&value)
            .headers(headers);
        if let Some(k) = &s.key {
            rec = rec.key(k);
        }
        producer
            .send(rec, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("cannot produce to {}: {e}", r.topic))?;
        n += 1;
    }
    Ok(n)
}

/// A replayed message's target: the one destination it is for, and whether
/// routing may be bypassed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub destination: String,
    pub force: bool,
}

/// The replay headers of a consumed message, if any.
pub fn replay_target(headers: Option<&rdkafka::message::BorrowedHeaders>) -> Option<Replay> {
    let headers = headers?;
    let value = |key: &str| {
        (0..headers.count())
            .map(|i| headers.get(i))
            .find(|h| h.key == key)
            .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
    };
    Some(Replay {
        destination: value(REPLAY_HEADER)?,
        force: value(REPLAY_FORCE_HEADER).as_deref() == Some("true"),
    })
}

/// Prints every parked delivery, oldest first, a page at a time: from the
/// ledger file when herald is stopped, otherwise through the running
/// daemon's admin API (`/v1/parked`, with `admin.token` when set).
pub async fn print_parked(config: &Config) -> anyhow::Result<()> {
    let print = |p: &serde_json::Value| {
        if p["unreadable"] == true {
            println!(
                "(row {} does not read; dead-lettered at the next sweep)",
                p["id"]
            );
            return;
        }
        println!(
            "{}\t{}\t{}/{}@{}\tattempts={}\tnext={}\t{}",
            p["destination"].as_str().unwrap_or(""),
            p["key"].as_str().unwrap_or(""),
            p["topic"].as_str().unwrap_or(""),
            p["partition"],
            p["offset"],
            p["attempts"],
            p["next_attempt_ms"]
                .as_i64()
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            p["last_error"].as_str().unwrap_or("")
        );
    };
    let metrics = std::sync::Arc::new(crate::telemetry::Metrics::new());
    match Ledger::open(&config.state_dir, metrics) {
        Ok(l) => {
            let mut after = 0;
            loop {
                let page = l.page(after, crate::http::PAGE_MAX)?;
                for (id, row) in &page {
                    print(&crate::http::listed(*id, row));
                    after = *id;
                }
                if page.len() < crate::http::PAGE_MAX {
                    return Ok(());
                }
            }
        }
        Err(LedgerError::Locked { .. }) => {
            let client = reqwest::Client::new();
            let mut after = 0u64;
            loop {
                let url = format!(
                    "http://{}/v1/parked?after={after}&limit={}",
                    config.admin.listen,
                    crate::http::PAGE_MAX
                );
                let mut req = client.get(&url);
                if let Some(t) = config.admin.token() {
                    req = req.bearer_auth(t.expose());
                }
                let body: serde_json::Value = req
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("the ledger is in use and {url} did not answer: {e}")
                    })?
                    .error_for_status()?
                    .bytes()
                    .await
                    .map(|b| serde_json::from_slice(&b))??;
                for p in body["parked"].as_array().into_iter().flatten() {
                    print(p);
                }
                match body["next"].as_u64() {
                    Some(n) => after = n,
                    None => return Ok(()),
                }
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Where `herald explain` reads the ledger: the file when herald is stopped,
/// the running daemon's `/v1/ledger` while it holds the lock.
pub enum LedgerView {
    Off,
    /// No ledger file yet: nothing was ever recorded.
    Empty,
    Local(Ledger),
    /// The daemon's `/v1/ledger` base URL and admin token.
    Daemon(String, Option<crate::config::Secret>),
}

impl LedgerView {
    pub fn open(config: &Config) -> anyhow::Result<LedgerView> {
        if !config.ledger.enabled {
            return Ok(LedgerView::Off);
        }
        if !config.state_dir.join("herald.redb").exists() {
            return Ok(LedgerView::Empty);
        }
        let metrics = std::sync::Arc::new(crate::telemetry::Metrics::new());
        match Ledger::open(&config.state_dir, metrics) {
            Ok(l) => Ok(LedgerView::Local(l)),
            Err(LedgerError::Locked { .. }) => Ok(LedgerView::Daemon(
                format!("http://{}/v1/ledger", config.admin.listen),
                config.admin.token(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The stored entry of (destination, key) and whether an earlier
    /// delivery of the key is parked there.
    pub async fn lookup(
        &self,
        destination: &str,
        key: &str,
    ) -> anyhow::Result<(Option<crate::ledger::Entry>, bool)> {
        match self {
            LedgerView::Off | LedgerView::Empty => Ok((None, false)),
            LedgerView::Local(l) => Ok((l.get(destination, key)?, l.is_parked(destination, key)?)),
            LedgerView::Daemon(base, token) => {
                let mut url = reqwest::Url::parse(base)?;
                url.path_segments_mut()
                    .map_err(|_| anyhow::anyhow!("bad daemon URL {base}"))?
                    .push(destination)
                    .push(key);
                let mut req = reqwest::Client::new().get(url);
                if let Some(t) = token {
                    req = req.bearer_auth(t.expose());
                }
                let bytes = req
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("the ledger is in use and {base} did not answer: {e}")
                    })?
                    .error_for_status()?
                    .bytes()
                    .await?;
                let body: serde_json::Value = serde_json::from_slice(&bytes)?;
                let entry = match body["entry"].as_str() {
                    None => None,
                    Some(b) => {
                        let bytes =
                            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b)?;
                        Some(crate::ledger::Entry::decode(&bytes).ok_or_else(|| {
                            anyhow::anyhow!("{base} answered an entry herald cannot read")
                        })?)
                    }
                };
                Ok((entry, body["parked"].as_bool().unwrap_or(false)))
            }
        }
    }
}
