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
    pub assigned_partitions: IntGauge,
    pub dead_letter_write_duration: Histogram,
    pub build_info: IntGaugeVec,
    pub commit_failures: IntCounter,
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
            assigned_partitions,
            dead_letter_write_duration,
            build_info: gauge(
                &r,
                "herald_build_info",
                "Always 1; labels carry the version.",
                &["version"],
            ),
            commit_failures,
            registry: r,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for reason in crate::model::InvalidReason::ALL {
            m.invalid_messages.with_label_values(&[reason.as_str()]);
        }
        m
    }

    /// Pre-creates the per-destination series so they read 0 rather than absent.
    pub fn register_destination(&self, name: &str) {
        for outcome in ["delivered", "dead_lettered"] {
            self.deliveries.with_label_values(&[name, outcome]);
        }
        self.delivery_retries.with_label_values(&[name]);
        self.destination_in_flight.with_label_values(&[name]);
        self.destination_queue_depth.with_label_values(&[name]);
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
