//! Every metric herald exports, registered once. Names follow Prometheus
//! conventions: `herald_` prefix, `_total` counters, base units in names.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub messages_consumed: IntCounterVec,
    pub invalid_messages: IntCounterVec,
    pub alerts_skipped: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub delivery_failures: IntCounterVec,
    pub delivery_retries: IntCounterVec,
    pub delivery_duration: HistogramVec,
    pub destination_in_flight: IntGaugeVec,
    pub destination_queue_depth: IntGaugeVec,
    pub dead_letters: IntCounterVec,
    pub committed_offset: IntGaugeVec,
    pub consumer_lag: IntGaugeVec,
    pub partition_in_flight: IntGaugeVec,
    pub partition_paused: IntGaugeVec,
    pub in_flight_messages: IntGauge,
    pub in_flight_bytes: IntGauge,
    pub consumers_recreated: IntCounter,
    pub assigned_partitions: IntGauge,
    pub dead_letter_write_duration: Histogram,
    pub build_info: IntGaugeVec,
    pub commit_failures: IntCounter,
    pub dead_letter_refused: IntCounter,
    pub parked: IntGaugeVec,
    pub breaker_state: IntGaugeVec,
    pub rate_limit_wait: prometheus::CounterVec,
    pub last_success: prometheus::GaugeVec,
    pub last_failure: prometheus::GaugeVec,
    pub ledger_write_duration: Histogram,
    pub ledger_batch_size: Histogram,
    pub ledger_entries: IntGauge,
    pub ledger_file_size: IntGauge,
    pub ledger_healthy: IntGauge,
    pub parked_oldest_age: prometheus::GaugeVec,
    pub ingest_requests: IntCounterVec,
    pub config_reload_successful: IntGauge,
    pub config_reload_success_time: prometheus::Gauge,
    pub central_requests: IntCounterVec,
    pub central_metadata_stale: IntGauge,
    pub central_metadata_age: prometheus::Gauge,
    pub central_metadata_entries: IntGaugeVec,
    pub reconcile_found: IntCounterVec,
    pub alert_key_mismatches: IntCounterVec,
    pub reconcile_polls: IntCounterVec,
    pub reconcile_skipped: IntCounterVec,
    pub reconcile_watermark: prometheus::Gauge,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let latency_buckets = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0,
        ];
        let delivery_duration = HistogramVec::new(
            HistogramOpts::new(
                "herald_delivery_duration_seconds",
                "Time from dispatch to the final outcome of a delivery, retries included.",
            )
            .buckets(latency_buckets.clone()),
            &["destination"],
        )
        .expect("valid metric");
        r.register(Box::new(delivery_duration.clone()))
            .expect("unique metric");
        let dead_letter_write_duration = Histogram::with_opts(
            HistogramOpts::new(
                "herald_dead_letter_write_duration_seconds",
                "Time until the broker acknowledged a dead-letter record.",
            )
            .buckets(latency_buckets),
        )
        .expect("valid metric");
        r.register(Box::new(dead_letter_write_duration.clone()))
            .expect("unique metric");
        let in_flight_messages = IntGauge::new(
            "herald_in_flight_messages",
            "Messages consumed whose deliveries are not all final yet.",
        )
        .expect("valid metric");
        r.register(Box::new(in_flight_messages.clone()))
            .expect("unique metric");
        let in_flight_bytes = IntGauge::new(
            "herald_in_flight_bytes",
            "Bytes of message values consumed whose deliveries are not all final yet.",
        )
        .expect("valid metric");
        r.register(Box::new(in_flight_bytes.clone()))
            .expect("unique metric");
        let consumers_recreated = IntCounter::new(
            "herald_consumers_recreated_total",
            "Kafka consumers replaced in-process after a fatal consumer error.",
        )
        .expect("valid metric");
        r.register(Box::new(consumers_recreated.clone()))
            .expect("unique metric");
        let assigned_partitions = IntGauge::new(
            "herald_assigned_partitions",
            "Partitions currently assigned to this instance.",
        )
        .expect("valid metric");
        r.register(Box::new(assigned_partitions.clone()))
            .expect("unique metric");
        let commit_failures = IntCounter::new(
            "herald_offset_commit_failures_total",
            "Offset commits the broker refused.",
        )
        .expect("valid metric");
        r.register(Box::new(commit_failures.clone()))
            .expect("unique metric");

        let dead_letter_refused = IntCounter::new(
            "herald_dead_letters_refused_total",
            "Dead letters the topic refused even without their value (its limit is below any record); the message stays only in its source topic.",
        )
        .expect("valid metric");
        r.register(Box::new(dead_letter_refused.clone()))
            .expect("unique metric");

        let ledger_write_duration = Histogram::with_opts(
            HistogramOpts::new(
                "herald_ledger_write_duration_seconds",
                "Time to commit one ledger batch durably (one fsync).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(ledger_write_duration.clone()))
            .expect("unique metric");
        let ledger_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "herald_ledger_batch_size",
                "Write requests committed per ledger transaction.",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(ledger_batch_size.clone()))
            .expect("unique metric");
        let plain_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let ledger_entries =
            plain_gauge("herald_ledger_entries", "Delivery entries in the ledger.");
        let ledger_file_size =
            plain_gauge("herald_ledger_file_size_bytes", "Size of the ledger file.");
        let ledger_healthy =
            plain_gauge("herald_ledger_healthy", "0 after a ledger store failure.");
        let config_reload_successful = plain_gauge(
            "herald_config_last_reload_successful",
            "0 when the last SIGHUP reload was refused (the previous config still runs).",
        );
        let scalar_gauge = |name: &str, help: &str| {
            let g = prometheus::Gauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let config_reload_success_time = scalar_gauge(
            "herald_config_last_reload_success_timestamp_seconds",
            "When the running config was loaded (at start or by a successful reload).",
        );
        let central_metadata_stale = plain_gauge(
            "herald_central_metadata_stale",
            "1 while the last read of Central's namespace and cluster metadata failed (the previous one stays in use).",
        );
        let central_metadata_age = scalar_gauge(
            "herald_central_metadata_age_seconds",
            "Age of the namespace and cluster metadata in use, read from Central (0: none read yet).",
        );
        let reconcile_watermark = scalar_gauge(
            "herald_reconcile_watermark_seconds",
            "Violation time up to which Central's alerts are reconciled (Unix seconds; 0: not yet).",
        );
        let parked_oldest_age = prometheus::GaugeVec::new(
            Opts::new(
                "herald_parked_oldest_age_seconds",
                "Age of the oldest parked delivery, by destination and target (0: none).",
            ),
            &["destination", "target"],
        )
        .expect("valid metric");
        r.register(Box::new(parked_oldest_age.clone()))
            .expect("unique metric");
        let float_gauge = |name: &str, help: &str| {
            let g = prometheus::GaugeVec::new(Opts::new(name, help), &["destination"])
                .expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let last_success = float_gauge(
            "herald_destination_last_success_timestamp_seconds",
            "When the destination last accepted a delivery.",
        );
        let last_failure = float_gauge(
            "herald_destination_last_failure_timestamp_seconds",
            "When an attempt to the destination last failed.",
        );
        let rate_limit_wait = prometheus::CounterVec::new(
            Opts::new(
                "herald_rate_limit_wait_seconds_total",
                "Time deliveries waited for the destination's rate limit.",
            ),
            &["destination"],
        )
        .expect("valid metric");
        r.register(Box::new(rate_limit_wait.clone()))
            .expect("unique metric");

        let m = Metrics {
            messages_consumed: counter(
                &r,
                "herald_messages_consumed_total",
                "Messages read from Kafka.",
                &["topic", "partition"],
            ),
            invalid_messages: counter(
                &r,
                "herald_invalid_messages_total",
                "Messages that are not an alert or audit event, by reason.",
                &["reason"],
            ),
            alerts_skipped: counter(
                &r,
                "herald_alerts_skipped_total",
                "Alerts consumed but not dispatched, by reason.",
                &["reason"],
            ),
            deliveries: counter(
                &r,
                "herald_deliveries_total",
                "Final delivery outcomes by destination.",
                &["destination", "outcome"],
            ),
            delivery_failures: counter(
                &r,
                "herald_delivery_failures_total",
                "Failed delivery attempts by destination and reason.",
                &["destination", "reason"],
            ),
            delivery_retries: counter(
                &r,
                "herald_delivery_retries_total",
                "Delivery attempts that were retried.",
                &["destination"],
            ),
            delivery_duration,
            destination_in_flight: gauge(
                &r,
                "herald_destination_in_flight",
                "Deliveries being attempted now.",
                &["destination"],
            ),
            destination_queue_depth: gauge(
                &r,
                "herald_destination_queue_depth",
                "Deliveries waiting in the destination's queue.",
                &["destination"],
            ),
            dead_letters: counter(
                &r,
                "herald_dead_letters_total",
                "Records written to the dead-letter topic, by kind.",
                &["kind"],
            ),
            committed_offset: gauge(
                &r,
                "herald_committed_offset",
                "Last offset committed per partition (the next offset to read).",
                &["topic", "partition"],
            ),
            consumer_lag: gauge(
                &r,
                "herald_consumer_lag",
                "Messages between the committed offset and the end of the partition.",
                &["topic", "partition"],
            ),
            partition_in_flight: gauge(
                &r,
                "herald_partition_in_flight_messages",
                "Unfinished messages per partition.",
                &["topic", "partition"],
            ),
            partition_paused: gauge(
                &r,
                "herald_partition_paused",
                "1 while a partition is paused for backpressure.",
                &["topic", "partition"],
            ),
            in_flight_messages,
            in_flight_bytes,
            consumers_recreated,
            assigned_partitions,
            dead_letter_write_duration,
            build_info: gauge(
                &r,
                "herald_build_info",
                "Always 1; labels carry the version.",
                &["version"],
            ),
            commit_failures,
            dead_letter_refused,
            parked: gauge(
                &r,
                "herald_parked_deliveries",
                "Deliveries parked in the store, by destination and annotation-routed target.",
                &["destination", "target"],
            ),
            breaker_state: gauge(
                &r,
                "herald_breaker_state",
                "Circuit breaker: 0 closed, 1 open, 2 half-open; per destination and target.",
                &["destination", "target"],
            ),
            rate_limit_wait,
            last_success,
            last_failure,
            ledger_write_duration,
            ledger_batch_size,
            ledger_entries,
            ledger_file_size,
            ledger_healthy,
            parked_oldest_age,
            ingest_requests: counter(
                &r,
                "herald_ingest_requests_total",
                "POST /v1/ingest requests by HTTP status code.",
                &["code"],
            ),
            config_reload_successful,
            config_reload_success_time,
            central_requests: counter(
                &r,
                "herald_central_requests_total",
                "Calls to Central's API by call (namespaces, clusters, …) and outcome (ok, unauthorized, forbidden, error).",
                &["call", "outcome"],
            ),
            central_metadata_stale,
            central_metadata_age,
            central_metadata_entries: gauge(
                &r,
                "herald_central_metadata_entries",
                "Namespaces and clusters in the metadata read from Central.",
                &["kind"],
            ),
            alert_key_mismatches: counter(
                &r,
                "herald_alert_key_mismatches_total",
                "Alerts whose Kafka message key is not their alert id (or absent), by topic: the states of one alert may then land on different partitions.",
                &["topic"],
            ),
            reconcile_found: counter(
                &r,
                "herald_reconcile_found_total",
                "Alerts reconciliation with Central produced to the topic: missing (never carried), updated (a newer violation) and resolved.",
                &["kind"],
            ),
            reconcile_skipped: counter(
                &r,
                "herald_reconcile_skipped_total",
                "Alerts reconciliation passed over: unreadable in Central's answer, or too_large to produce.",
                &["reason"],
            ),
            reconcile_polls: counter(
                &r,
                "herald_reconcile_polls_total",
                "Reconciliation polls of Central by outcome (ok, error).",
                &["outcome"],
            ),
            reconcile_watermark,
            registry: r,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m.config_reload_successful.set(1);
        // Present from the start, so increase() sees the first dead letter.
        for kind in ["invalid_input", "delivery_failed"] {
            m.dead_letters.with_label_values(&[kind]);
        }
        // 0 only after a store failure (also with the ledger off).
        m.ledger_healthy.set(1);
        m
    }

    /// Pre-creates the series of each reason a message can be invalid for,
    /// so they read 0 rather than absent.
    pub fn register_invalid_reasons<'a>(&self, reasons: impl IntoIterator<Item = &'a str>) {
        for reason in reasons {
            self.invalid_messages.with_label_values(&[reason]);
        }
    }

    /// Pre-creates the per-destination series so they read 0 rather than absent.
    pub fn register_destination(&self, name: &str) {
        for outcome in ["delivered", "skipped", "parked", "dead_lettered"] {
            self.deliveries.with_label_values(&[name, outcome]);
        }
        self.delivery_retries.with_label_values(&[name]);
        self.destination_in_flight.with_label_values(&[name]);
        self.destination_queue_depth.with_label_values(&[name]);
        self.parked.with_label_values(&[name, ""]);
        self.parked_oldest_age.with_label_values(&[name, ""]);
        self.rate_limit_wait.with_label_values(&[name]);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
