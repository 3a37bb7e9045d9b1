//! The daemon: source → decode → route → per-destination pools, with offsets
//! committed as deliveries become final, and a bounded graceful stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::deadletter::{DeadLetter, DeadLetters, Origin};
use crate::delivery::{Inbound, Job, Pool, Shared};
use crate::http::{self, Health, Metrics};
use crate::ledger::Ledger;
use crate::model::{decode, Event};
use crate::routing;
use crate::source::tracker::{Limits, Ticket, Tp, Tracker};
use crate::source::{self, KafkaConsumer, SourceContext};

/// Runs until SIGTERM or SIGINT, then stops within the grace period. SIGHUP
/// reloads the destinations from `config_path`.
pub async fn run(config: Config, config_path: std::path::PathBuf) -> anyhow::Result<()> {
    let started = Instant::now();
    // Before anything slow: SIGHUP's default action would end the process.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    // The ledger, its lock and the dead-letter file hold alerts: private.
    crate::files::private_umask();
    for w in config.cleartext_warnings() {
        tracing::warn!("credentials in clear: {w}");
    }
    let metrics = Arc::new(Metrics::new());
    metrics.register_invalid_reasons(crate::model::InvalidReason::ALL.map(|r| r.as_str()));
    metrics.config_reload_success_time.set(now_secs());
    let health = Arc::new(Health::default());
    // The ledger first: a second herald on the same state_dir stops here.
    let ledger = if config.ledger.enabled {
        Some(Ledger::open(&config.state_dir, metrics.clone())?)
    } else {
        tracing::warn!("ledger disabled: at-least-once only (no notify-once, no parking)");
        None
    };
    let stop_http = CancellationToken::new();
    let http_task = http::serve(
        config.http.listen,
        metrics.clone(),
        health.clone(),
        ledger.clone(),
        stop_http.clone(),
    )
    .await?;

    let k = &config.kafka;
    let ingest_task = match &config.ingest {
        Some(i) => Some(http::ingest::serve(i, k, metrics.clone(), stop_http.clone()).await?),
        None => None,
    };
    let tracker = Arc::new(Tracker::new(Limits {
        per_partition: k.max_in_flight_per_partition,
        total: k.max_in_flight,
    }));
    let ctx = SourceContext {
        tracker: tracker.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
    };
    let consumer = Arc::new(source::consumer(k, ctx)?);
    {
        let (c, topic) = (consumer.clone(), k.dead_letter_topic.clone());
        tokio::task::spawn_blocking(move || {
            source::require_topic(
                &c,
                &topic,
                "kafka.dead_letter_topic",
                Duration::from_secs(10),
            )
        })
        .await??;
    }
    let dead_letters = Arc::new(DeadLetters::new(
        source::producer(k)?,
        k.dead_letter_topic.clone(),
        k.dead_letter_max_bytes,
        k.dead_letter_file.clone(),
        metrics.clone(),
    )?);

    let abandon = CancellationToken::new();
    let shared = Shared {
        metrics: metrics.clone(),
        dead_letters: dead_letters.clone(),
        ledger: ledger.clone(),
        abandon: abandon.clone(),
        failure_log_interval: config.log.failure_log_interval.0,
    };
    let routes: Vec<Arc<Pool>> = config
        .destinations
        .iter()
        .map(|d| Arc::new(Pool::start(d, shared.clone())))
        .collect();
    config.destinations.iter().for_each(spawn_preflight);
    if let Some(l) = &ledger {
        tokio::spawn(ledger_upkeep(
            l.clone(),
            config.ledger.retention(),
            config.ledger.sweep_interval.0,
            metrics.clone(),
            health.clone(),
            abandon.clone(),
        ));
    }
    tracing::info!(
        destinations = routes.len(),
        listen = %config.http.listen,
        startup_ms = started.elapsed().as_millis() as u64,
        "herald started"
    );
    // Type=notify units: started means listening and consuming.
    sd_notify_state(&[sd_notify::NotifyState::Ready]);

    let stop_consuming = CancellationToken::new();
    let commit_task = tokio::spawn(commit_loop(
        consumer.clone(),
        tracker.clone(),
        metrics.clone(),
        k.commit_interval.0,
        stop_consuming.clone(),
    ));
    let signal_task = tokio::spawn(wait_for_signal(stop_consuming.clone()));
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let reload_task = tokio::spawn(reload_on_sighup(
        hangup,
        config_path,
        reload_tx,
        metrics.clone(),
    ));

    let (limits, max_alert_age) = (k.decode_limits(), k.max_alert_age.map(|d| d.0));
    let grace = config.shutdown_grace;
    let mut dispatcher = Dispatcher {
        consumer: consumer.clone(),
        tracker: tracker.clone(),
        metrics: metrics.clone(),
        dead_letters: dead_letters.clone(),
        abandon: abandon.clone(),
        routes: std::sync::RwLock::new(Arc::new(routes)),
        shared,
        running: config,
        reloads: reload_rx,
        fatal: None,
        limits,
        max_alert_age,
    };
    dispatcher.consume(&stop_consuming).await;
    let fatal = dispatcher.fatal.take();
    // Consuming also ends on a fatal consumer error: stop the commit loop too.
    stop_consuming.cancel();

    // Graceful stop: drain what is in flight within the grace period, then
    // abandon the rest (uncommitted, so it is consumed again) and commit.
    sd_notify_state(&[sd_notify::NotifyState::Stopping]);
    tracing::info!(
        in_flight = tracker.total(),
        "stopping: draining in-flight deliveries"
    );
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let drained = tracker.drained.notified();
        if tracker.total() == 0 {
            break;
        }
        if tokio::time::timeout_at(deadline, drained).await.is_err() {
            tracing::warn!(
                abandoned = tracker.total(),
                "grace period over; abandoning unfinished deliveries"
            );
            break;
        }
    }
    abandon.cancel();
    // Close connections cleanly (TLS close_notify) so receivers keep every frame.
    reload_task.abort();
    let routes = dispatcher.routes();
    let closing = futures::future::join_all(routes.iter().map(|p| p.close()));
    if tokio::time::timeout(Duration::from_secs(5), closing)
        .await
        .is_err()
    {
        tracing::warn!("closing destination connections took longer than 5s");
    }
    let _ = commit_task.await;
    signal_task.abort();
    let final_marks = tracker.commit_candidates();
    let c = consumer.clone();
    let committed = tokio::task::spawn_blocking(move || {
        if final_marks.is_empty() {
            return Ok(Vec::new());
        }
        c.commit(&source::to_tpl(&final_marks), CommitMode::Sync)
            .map(|_| final_marks)
    });
    match tokio::time::timeout(Duration::from_secs(5), committed).await {
        Ok(Ok(Ok(marks))) => {
            consumer.context().record_commits(&marks);
            tracing::info!(partitions = marks.len(), "final offsets committed");
        }
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "final commit failed"),
        _ => tracing::warn!("final commit did not finish in time"),
    }
    let d = dead_letters.clone();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::task::spawn_blocking(move || d.flush(Duration::from_secs(4))),
    )
    .await;
    drop(dispatcher);
    // Closing a consumer can hang in librdkafka (known rust-rdkafka issue);
    // bound it so the process always exits.
    let close = tokio::task::spawn_blocking(move || {
        consumer.unsubscribe();
        drop(consumer);
    });
    if tokio::time::timeout(Duration::from_secs(5), close)
        .await
        .is_err()
    {
        tracing::warn!("kafka consumer close did not finish in 5s; exiting anyway");
    }
    stop_http.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), http_task).await;
    if let Some(t) = ingest_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    tracing::info!("stopped");
    match fatal {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => Ok(()),
    }
}

/// Expires old ledger entries and keeps the ledger gauges and `/readyz` current.
async fn ledger_upkeep(
    ledger: Ledger,
    retention: crate::ledger::Retention,
    sweep_every: Duration,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: CancellationToken,
) {
    let mut last_sweep = Instant::now();
    let mut first = true;
    loop {
        if first || last_sweep.elapsed() >= sweep_every {
            first = false;
            last_sweep = Instant::now();
            match ledger
                .sweep(chrono::Utc::now().timestamp_millis(), retention)
                .await
            {
                Ok(n) if n > 0 => tracing::info!(expired = n, "ledger entries expired"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "ledger sweep failed"),
            }
        }
        let healthy = ledger.healthy();
        health
            .store_failed
            .store(!healthy, std::sync::atomic::Ordering::Relaxed);
        metrics.ledger_healthy.set(healthy as i64);
        if let Ok(n) = ledger.len() {
            metrics.ledger_entries.set(n as i64);
        }
        metrics.ledger_file_size.set(ledger.file_size() as i64);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Start-up checks (Jira permissions and priorities …) in the background: a
/// destination that fails them still gets its deliveries retried.
fn spawn_preflight(d: &crate::config::Destination) {
    let (name, notifier) = (d.common.name.clone(), d.notifier.clone());
    tokio::spawn(async move {
        match notifier.preflight().await {
            Ok(what) => tracing::info!(destination = %name, "start-up checks: {what}"),
            Err(e) => tracing::error!(destination = %name, error = %e, "start-up checks failed"),
        }
    });
}

/// Tells systemd (when NOTIFY_SOCKET is set) what herald is doing.
fn sd_notify_state(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

fn now_secs() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

/// Reads and validates the file on every SIGHUP; a valid config goes to the
/// dispatcher, an invalid one is refused and the running one stays.
async fn reload_on_sighup(
    mut hangup: tokio::signal::unix::Signal,
    path: std::path::PathBuf,
    to_dispatcher: tokio::sync::mpsc::Sender<Config>,
    metrics: Arc<Metrics>,
) {
    while hangup.recv().await.is_some() {
        tracing::info!(config = %path.display(), "SIGHUP received: reloading");
        // Type=notify-reload (systemd 253+) wants RELOADING=1 with the time, then READY=1.
        let mut states = vec![sd_notify::NotifyState::Reloading];
        states.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
        sd_notify_state(&states);
        let p = path.clone();
        match tokio::task::spawn_blocking(move || Config::load(&p)).await {
            Ok(Ok(cfg)) => {
                if to_dispatcher.send(cfg).await.is_err() {
                    return;
                }
            }
            Ok(Err(errs)) => {
                metrics.config_reload_successful.set(0);
                tracing::error!(
                    "reload refused, the running configuration stays: invalid configuration:\n{errs}"
                );
            }
            Err(e) => tracing::error!(error = %e, "reload task failed"),
        }
        // A refused reload also ends the reload: the old config runs on.
        sd_notify_state(&[sd_notify::NotifyState::Ready]);
    }
}

async fn wait_for_signal(stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    stop.cancel();
}

/// Commits each partition's watermark every `interval` until `stop`.
async fn commit_loop(
    consumer: Arc<KafkaConsumer>,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        for (tp, in_flight, paused) in tracker.snapshot() {
            let labels = [tp.topic.as_ref(), &tp.partition.to_string()];
            metrics
                .partition_in_flight
                .with_label_values(&labels)
                .set(in_flight as i64);
            metrics
                .partition_paused
                .with_label_values(&labels)
                .set(paused as i64);
        }
        metrics.in_flight_messages.set(tracker.total() as i64);
        let marks = tracker.commit_candidates();
        if marks.is_empty() {
            continue;
        }
        let c = consumer.clone();
        let result = tokio::task::spawn_blocking(move || {
            c.commit(&source::to_tpl(&marks), CommitMode::Sync)
                .map(|_| marks)
        })
        .await;
        match result {
            Ok(Ok(marks)) => consumer.context().record_commits(&marks),
            Ok(Err(e)) => {
                metrics.commit_failures.inc();
                tracing::warn!(error = %e, "offset commit failed; will retry");
            }
            Err(e) => tracing::error!(error = %e, "commit task failed"),
        }
    }
}

struct Dispatcher {
    consumer: Arc<KafkaConsumer>,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    dead_letters: Arc<DeadLetters>,
    abandon: CancellationToken,
    /// Replaced whole by a reload; a message is routed with one snapshot.
    routes: std::sync::RwLock<Arc<Vec<Arc<Pool>>>>,
    shared: Shared,
    /// The config in force (for what a reload cannot change).
    running: Config,
    reloads: tokio::sync::mpsc::Receiver<Config>,
    /// Set when the consumer failed fatally: herald stops and exits non-zero.
    fatal: Option<String>,
    limits: crate::model::Limits,
    max_alert_age: Option<Duration>,
}

impl Dispatcher {
    fn routes(&self) -> Arc<Vec<Arc<Pool>>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn consume(&mut self, stop: &CancellationToken) {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                Some(cfg) = self.reloads.recv() => self.reload(cfg),
                _ = self.tracker.resume.notified() => self.apply_resumes(),
                msg = self.consumer.recv() => match msg {
                    Ok(m) => {
                        let only = crate::cli::dlq::replay_target(m.headers());
                        let origin = Origin {
                            topic: m.topic().to_string(),
                            partition: m.partition(),
                            offset: m.offset(),
                            key: m.key().map(<[u8]>::to_vec),
                            value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        };
                        drop(m);
                        self.handle(origin, only, stop).await;
                        self.apply_pauses();
                    }
                    Err(rdkafka::error::KafkaError::MessageConsumptionFatal(code)) => {
                        // The consumer is dead (e.g. fenced after a broker
                        // restart): stop as on SIGTERM and exit non-zero, so
                        // the supervisor restarts herald with a new consumer.
                        tracing::error!(error = ?code, "fatal kafka consumer error: stopping so that herald is restarted");
                        self.fatal = Some(format!("fatal kafka consumer error: {code:?}"));
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka consume error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }

    /// Applies a validated config: unchanged destinations keep their pool
    /// (queues, breakers, connections); a changed one gets a new pool while
    /// the old one finishes its queue; a removed one finishes its queue, and
    /// then its parked deliveries are dead-lettered (`destination_removed`).
    fn reload(&mut self, cfg: Config) {
        let old = self.routes();
        let mut by_name: std::collections::HashMap<String, Arc<Pool>> = old
            .iter()
            .map(|p| (p.common.name.clone(), p.clone()))
            .collect();
        let (mut added, mut changed, mut unchanged) = (Vec::new(), Vec::new(), 0);
        let mut next = Vec::new();
        for d in &cfg.destinations {
            let name = d.common.name.clone();
            match by_name.remove(&name) {
                Some(p) if p.fingerprint == d.fingerprint => {
                    unchanged += 1;
                    next.push(p);
                }
                Some(p) => {
                    let fresh = Arc::new(Pool::start_paused(d, self.shared.clone()));
                    let tasks = p.retire();
                    let successor = fresh.clone();
                    tokio::spawn(async move {
                        futures::future::join_all(tasks).await;
                        p.close().await;
                        successor.allow_sweep();
                    });
                    spawn_preflight(d);
                    changed.push(name);
                    next.push(fresh);
                }
                None => {
                    spawn_preflight(d);
                    added.push(name);
                    next.push(Arc::new(Pool::start(d, self.shared.clone())));
                }
            }
        }
        let removed: Vec<String> = by_name.keys().cloned().collect();
        for (name, p) in by_name {
            let tasks = p.retire();
            let shared = self.shared.clone();
            tokio::spawn(async move {
                futures::future::join_all(tasks).await;
                p.close().await;
                let n = crate::delivery::parking::dead_letter_removed(&shared, &name).await;
                tracing::info!(destination = %name, dead_lettered = n, "removed destination stopped");
            });
        }
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        if cfg.static_fingerprint != self.running.static_fingerprint {
            tracing::warn!(
                "settings outside [[destinations]] and namespace_metadata changed; they apply at the next restart"
            );
        }
        self.running = cfg;
        self.metrics.config_reload_successful.set(1);
        self.metrics.config_reload_success_time.set(now_secs());
        tracing::info!(
            ?added,
            ?changed,
            ?removed,
            unchanged,
            "configuration reloaded"
        );
    }

    fn apply_pauses(&self) {
        let tps = self.tracker.to_pause();
        if tps.is_empty() {
            return;
        }
        match self.consumer.pause(&source::partitions_tpl(&tps)) {
            Ok(()) => tracing::debug!(partitions = tps.len(), "paused for backpressure"),
            Err(e) => tracing::warn!(error = %e, "pause failed"),
        }
    }

    fn apply_resumes(&self) {
        let tps = self.tracker.to_resume();
        if tps.is_empty() {
            return;
        }
        match self.consumer.resume(&source::partitions_tpl(&tps)) {
            Ok(()) => tracing::debug!(partitions = tps.len(), "resumed"),
            Err(e) => tracing::warn!(error = %e, "resume failed"),
        }
    }

    /// `only`: a replayed message goes to that destination alone.
    async fn handle(
        &self,
        origin: Origin,
        only: Option<crate::cli::dlq::Replay>,
        stop: &CancellationToken,
    ) {
        let tp = Tp::new(&origin.topic, origin.partition);
        self.metrics
            .messages_consumed
            .with_label_values(&[&origin.topic, &origin.partition.to_string()])
            .inc();
        let Some(token) = self.tracker.begin(&tp, origin.offset) else {
            tracing::debug!(topic = %origin.topic, partition = origin.partition, "message of an unassigned partition");
            return;
        };
        let event = match decode(&origin.value, &self.limits) {
            Ok(e) => e,
            Err(invalid) => {
                self.metrics
                    .invalid_messages
                    .with_label_values(&[invalid.reason.as_str()])
                    .inc();
                tracing::warn!(
                    topic = %origin.topic,
                    partition = origin.partition,
                    offset = origin.offset,
                    reason = invalid.reason.as_str(),
                    detail = %invalid.detail,
                    "invalid message; dead-lettering"
                );
                let ticket = Ticket::split(self.tracker.clone(), token, 1)
                    .pop()
                    .expect("one ticket");
                let record = DeadLetter::new("invalid_input", invalid.to_string(), &origin);
                let (dl, abandon) = (self.dead_letters.clone(), self.abandon.clone());
                tokio::spawn(async move {
                    if dl.write(&record, origin.key.as_deref(), &abandon).await {
                        ticket.done();
                    }
                });
                return;
            }
        };
        if let (Some(max_age), Event::Alert(a)) = (self.max_alert_age, &event) {
            if let Some(t) = a.fields.time {
                let age = chrono::Utc::now().signed_duration_since(t.0);
                if age.to_std().is_ok_and(|age| age > max_age) {
                    self.metrics
                        .alerts_skipped
                        .with_label_values(&["too_old"])
                        .inc();
                    tracing::debug!(alert = %a.fields.id, "alert older than max_alert_age; skipped");
                    Ticket::split(self.tracker.clone(), token, 0);
                    return;
                }
            }
        }
        let routes = self.routes();
        let chosen: Vec<&Arc<Pool>> = routes
            .iter()
            .filter(|p| {
                if let Some(only) = &only {
                    if p.common.name != only.destination {
                        return false;
                    }
                    if only.force {
                        return true;
                    }
                }
                match routing::decide(&p.common, p.can_resolve(), &event) {
                    Ok(()) => true,
                    Err(why) => {
                        tracing::trace!(destination = %p.common.name, reason = %why, "not routed");
                        false
                    }
                }
            })
            .collect();
        let tickets = Ticket::split(self.tracker.clone(), token, chosen.len());
        if chosen.is_empty() {
            self.metrics
                .alerts_skipped
                .with_label_values(&["no_route"])
                .inc();
            return;
        }
        let inbound = Arc::new(Inbound { origin, event });
        for (pool, ticket) in chosen.into_iter().zip(tickets) {
            pool.enqueue(
                Job {
                    message: inbound.clone(),
                    ticket,
                    enqueued: Instant::now(),
                },
                stop,
            )
            .await;
        }
    }
}
