//! The Kafka source: a consumer-group member with manual, watermark-based
//! offset commits, backpressure by pausing partitions, and static membership.

pub mod tracker;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::{KafkaConfig, StartFrom};
use crate::telemetry::{Health, Metrics};
use tracker::{Tp, Tracker};

/// Callbacks from librdkafka: rebalances, statistics, errors.
pub struct SourceContext {
    pub tracker: Arc<Tracker>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Set when a new consumer replaced this one: its late callbacks (it
    /// may take a while to close) are ignored.
    pub retired: std::sync::atomic::AtomicBool,
}

pub type KafkaConsumer = StreamConsumer<SourceContext>;

impl ClientContext for SourceContext {
    fn stats(&self, stats: Statistics) {
        if self.is_retired() {
            return;
        }
        let up = stats.brokers.values().any(|b| b.state == "UP");
        self.health.brokers_down.store(!up, Ordering::Relaxed);
        if let Some(g) = &stats.cgrp {
            self.health
                .group_joined(g.state == "up" && g.join_state == "steady");
            let coordinator_up = stats
                .brokers
                .values()
                .any(|b| b.name.starts_with("GroupCoordinator") && b.state == "UP");
            self.health
                .coordinator_down
                .store(!coordinator_up, Ordering::Relaxed);
        }
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[topic, &partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.is_retired() {
            return;
        }
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            self.health.brokers_down.store(true, Ordering::Relaxed);
        }
        tracing::warn!(error = %error, reason, "kafka client error");
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(facility = fac, "librdkafka: {log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(facility = fac, "librdkafka: {log_message}"),
            _ => tracing::debug!(facility = fac, "librdkafka: {log_message}"),
        }
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if self.is_retired() {
            return;
        }
        if let Rebalance::Revoke(tpl) = rebalance {
            let tps = tps_of(tpl);
            // Commit what is final before the partitions go; in-flight work of
            // revoked partitions finishes without committing past it.
            let marks = self.tracker.revoke(&tps);
            if !marks.is_empty() {
                match consumer.commit(&to_tpl(&marks), CommitMode::Sync) {
                    Ok(()) => self.record_commits(&marks),
                    Err(e) => {
                        self.metrics.commit_failures.inc();
                        tracing::warn!(error = %e, "commit on revocation failed");
                    }
                }
            }
            for tp in &tps {
                let labels = [tp.topic.as_ref(), &tp.partition.to_string()];
                let _ = self.metrics.partition_paused.remove_label_values(&labels);
                let _ = self
                    .metrics
                    .partition_in_flight
                    .remove_label_values(&labels);
            }
            tracing::info!(partitions = %describe(&tps), "partitions revoked");
            // The assignment still holds the revoked partitions here.
            let n = consumer
                .assignment()
                .map(|a| a.count())
                .unwrap_or(0)
                .saturating_sub(tps.len());
            self.set_assigned(n);
            if n == 0 {
                // Out of the group until the next assignment (or until the
                // statistics say the member is steady with nothing assigned).
                self.health.group_joined(false);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if self.is_retired() {
            return;
        }
        match rebalance {
            Rebalance::Assign(tpl) => {
                let tps = tps_of(tpl);
                self.tracker.assign(&tps);
                self.health.group_joined(true);
                tracing::info!(partitions = %describe(&tps), "partitions assigned");
                self.update_assigned(consumer);
            }
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

impl SourceContext {
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    fn update_assigned(&self, consumer: &BaseConsumer<Self>) {
        self.set_assigned(consumer.assignment().map(|a| a.count()).unwrap_or(0));
    }

    fn set_assigned(&self, n: usize) {
        self.health.assigned_partitions.store(n, Ordering::Relaxed);
        self.metrics.assigned_partitions.set(n as i64);
    }

    pub fn record_commits(&self, marks: &[(Tp, i64)]) {
        for (tp, offset) in marks {
            self.tracker.committed(tp, *offset);
            self.metrics
                .committed_offset
                .with_label_values(&[tp.topic.as_ref(), &tp.partition.to_string()])
                .set(*offset);
        }
    }
}

fn tps_of(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| Tp::new(e.topic(), e.partition()))
        .collect()
}

fn describe(tps: &[Tp]) -> String {
    let mut v: Vec<String> = tps
        .iter()
        .map(|t| format!("{}/{}", t.topic, t.partition))
        .collect();
    v.sort();
    v.join(",")
}

pub fn to_tpl(marks: &[(Tp, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (tp, offset) in marks {
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))
            .expect("valid offset");
    }
    tpl
}

pub fn partitions_tpl(tps: &[Tp]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for tp in tps {
        tpl.add_partition(&tp.topic, tp.partition);
    }
    tpl
}

/// Connection and security settings shared by the consumer and the producer.
pub fn client_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    c.set("client.id", "herald");
    let protocol = match (k.tls.is_some(), k.sasl.is_some()) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let Some(tls) = &k.tls {
        if let Some(ca) = &tls.ca_file {
            c.set("ssl.ca.location", ca.to_string_lossy());
        }
        if let Some(cert) = &tls.cert_file {
            c.set("ssl.certificate.location", cert.to_string_lossy());
        }
        if let Some(key) = &tls.key_file {
            c.set("ssl.key.location", key.to_string_lossy());
        }
        if let Some(pw) = k.tls_key_password() {
            c.set("ssl.key.password", pw);
        }
        if tls.skip_verify {
            c.set("enable.ssl.certificate.verification", "false");
            c.set("ssl.endpoint.identification.algorithm", "none");
        }
    }
    if let Some(sasl) = &k.sasl {
        c.set("sasl.mechanism", sasl.mechanism.as_str());
        c.set("sasl.username", &sasl.username);
        if let Some(pw) = k.sasl_password() {
            c.set("sasl.password", pw);
        }
    }
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    c
}

/// The default static-membership id: stable for one host.
pub fn default_instance_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("herald-{host}")
}

pub fn consumer(k: &KafkaConfig, ctx: SourceContext) -> anyhow::Result<KafkaConsumer> {
    let mut c = client_config(k);
    let instance = k
        .group_instance_id
        .clone()
        .unwrap_or_else(default_instance_id);
    c.set("group.id", &k.group_id)
        .set("group.instance.id", &instance)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match k.start_from {
                StartFrom::Latest => "latest",
                StartFrom::Earliest => "earliest",
            },
        )
        .set(
            "session.timeout.ms",
            k.session_timeout.0.as_millis().to_string(),
        )
        .set("statistics.interval.ms", "5000")
        .set("fetch.wait.max.ms", "100")
        .set("queued.max.messages.kbytes", "16384");
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    let consumer: KafkaConsumer = c
        .set_log_level(RDKafkaLogLevel::Warning)
        .create_with_context(ctx)
        .map_err(|e| anyhow::anyhow!("kafka: cannot create consumer: {e}"))?;
    let topics: Vec<&str> = k.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| anyhow::anyhow!("kafka.topics: cannot subscribe: {e}"))?;
    tracing::info!(group = %k.group_id, instance = %instance, topics = ?k.topics, "subscribed");
    Ok(consumer)
}

pub fn producer(k: &KafkaConfig) -> anyhow::Result<rdkafka::producer::FutureProducer> {
    producer_with_timeout(k, Duration::from_secs(30))
}

/// An idempotent producer (acks=all) that gives up on a record after `timeout`.
pub fn producer_with_timeout(
    k: &KafkaConfig,
    timeout: Duration,
) -> anyhow::Result<rdkafka::producer::FutureProducer> {
    let mut c = client_config(k);
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", timeout.as_millis().to_string())
        // Room for the largest dead-letter record and for ingested bodies.
        .set(
            "message.max.bytes",
            (k.dead_letter_max_bytes.max(k.max_message_bytes) + (64 << 10)).to_string(),
        )
        .set("linger.ms", "5");
    c.set_log_level(RDKafkaLogLevel::Warning)
        .create()
        .map_err(|e| anyhow::anyhow!("kafka: cannot create producer: {e}"))
}

/// Fails unless `topic` exists; the dead-letter topic is checked at start.
pub fn require_topic(
    consumer: &KafkaConsumer,
    topic: &str,
    field: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| anyhow::anyhow!("{field}: cannot read metadata for topic {topic:?}: {e}"))?;
    match md.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
        Some(t) => anyhow::bail!(
            "{field}: topic {topic:?} is not usable: {}",
            t.error()
                .map(|e| format!("{:?}", RDKafkaErrorCode::from(e)))
                .unwrap_or_else(|| "no partitions".into())
        ),
        None => anyhow::bail!("{field}: topic {topic:?} does not exist"),
    }
}
