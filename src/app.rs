//! The daemon: source → decode → route → per-destination pools, with offsets
//! committed as deliveries become final, and a bounded graceful stop.
//!
//! The consume loop never waits on a destination (a pool takes each delivery
//! at once, parking what does not fit), pauses every partition while the
//! ledger cannot write (and reads again what was abandoned once it can), and
//! replaces a consumer that failed fatally instead of exiting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::deadletter::{DeadLetter, DeadLetters, Origin};
use crate::delivery::{self, Fatal, Inbound, Pool, Retrying, Shared, SystemClock};
use crate::destinations::{self, Destination};
use crate::http;
use crate::ledger::{self, Ledger};
use crate::model::{decode, Event};
use crate::routing::metadata::Metadata;
use crate::source::tracker::{Limits, Ticket, Tp, Tracker};
use crate::source::{self, KafkaConsumer, SourceContext};
use crate::telemetry::{Health, Metrics};

/// Fatal consumer errors herald recovers from in-process (a new consumer)
/// within [`RECREATE_WINDOW`] before it exits for its supervisor.
const MAX_RECREATES: usize = 5;
const RECREATE_WINDOW: Duration = Duration::from_secs(600);

/// One destination as the dispatcher routes to it.
struct Route {
    dest: Destination,
    pool: Arc<Pool>,
}

/// Runs until SIGTERM or SIGINT, then stops within the grace period. SIGHUP
/// reloads the destinations from `config_path`.
pub async fn run(
    config: Config,
    destinations: Vec<Destination>,
    live: Option<destinations::Live>,
    config_path: std::path::PathBuf,
) -> anyhow::Result<()> {
    let started = Instant::now();
    // Before anything slow: SIGHUP's default action would end the process.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    // The ledger, its lock and the dead-letter file hold alerts: private.
    crate::files::private_umask();
    for w in destinations::cleartext_warnings(&config, &destinations) {
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
    let listeners = http::Listeners::start(
        &config,
        metrics.clone(),
        health.clone(),
        ledger.clone(),
        stop_http.clone(),
    )
    .await?;

    let k = &config.kafka;
    let tracker = Arc::new(Tracker::new(Limits {
        per_partition: k.max_in_flight_per_partition,
        total: k.max_in_flight,
        bytes: k.max_in_flight_bytes,
    }));
    let ctx = {
        let (tracker, metrics, health) = (tracker.clone(), metrics.clone(), health.clone());
        move || SourceContext {
            tracker: tracker.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            retired: Default::default(),
        }
    };
    let consumer = Arc::new(source::consumer(k, ctx())?);
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
    // One producer for dead letters and reconciliation.
    let producer = source::producer(k)?;
    let dead_letters = Arc::new(DeadLetters::new(
        producer.clone(),
        k.dead_letter_topic.clone(),
        k.dead_letter_max_bytes,
        k.dead_letter_file.clone(),
        metrics.clone(),
    )?);

    let abandon = CancellationToken::new();
    let fatal = Fatal::default();
    let shared = Shared {
        metrics: metrics.clone(),
        dead_letters: dead_letters.clone(),
        ledger: ledger.clone(),
        abandon: abandon.clone(),
        clock: Arc::new(SystemClock::new()),
        failure_log_interval: config.log.failure_log_interval.0,
        limits: k.decode_limits(),
        fatal: fatal.clone(),
        retrying: Retrying::default(),
    };
    // With [central], the destinations read Central's metadata (loaded
    // live, from the last saved read), kept current from here on.
    let (live, reconciler) = match (&config.central, live) {
        (None, _) => (None, None),
        (Some(_), None) => anyhow::bail!("[central] without its metadata (load_for_run)"),
        (Some(c), Some((live, read_at))) => {
            if c.skip_tls_verify {
                tracing::warn!("[central] skip_tls_verify = true: Central's certificate is not checked; the API token goes to whoever answers");
            }
            let mut errs = crate::config::Errors::default();
            let client = crate::central::Client::build(c, Some(metrics.clone()), &mut errs);
            let client =
                Arc::new(client.ok_or_else(|| anyhow::anyhow!("invalid configuration:\n{errs}"))?);
            let mut refresher = crate::central::metadata::Refresher::new(
                c,
                client.clone(),
                live.clone(),
                config.state_dir.clone(),
                metrics.clone(),
                read_at,
            );
            // Read once before consuming, within the timeout; a failure
            // keeps the saved metadata (stale) and the refresher retries.
            let ok = match refresher.refresh_once(true).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "Central's metadata: first read failed; starting with the last saved one (stale)");
                    false
                }
            };
            tokio::spawn(refresher.run(abandon.clone(), ok));
            let reconciler = match &c.reconcile {
                None => None,
                Some(r) => {
                    let (r, page, max_bytes) = (r.clone(), c.page_size, k.max_message_bytes);
                    let (client, producer) = (client.clone(), producer.clone());
                    let (dir, metrics) = (config.state_dir.clone(), metrics.clone());
                    Some(
                        tokio::task::spawn_blocking(move || {
                            crate::central::reconcile::Reconciler::new(
                                &r, page, max_bytes, client, producer, dir, metrics,
                            )
                        })
                        .await?,
                    )
                }
            };
            (Some(live), reconciler)
        }
    };
    let routes: Vec<Arc<Route>> = destinations
        .into_iter()
        .map(|d| Arc::new(start_route(d, &shared, false)))
        .collect();
    dead_letter_orphans(&shared, &routes);
    if let Some(l) = &ledger {
        tokio::spawn(ledger_upkeep(
            l.clone(),
            crate::ledger::Retention {
                alerts: config.ledger.retention.0,
                resolved: config.ledger.resolved_retention.0,
                audit: config.ledger.audit_retention.0,
            },
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

    let current = Arc::new(std::sync::RwLock::new(consumer));
    let stop_consuming = CancellationToken::new();
    let commit_task = tokio::spawn(commit_loop(
        current.clone(),
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
        live.clone(),
    ));

    let max_alert_age = k.max_alert_age.map(|d| d.0);
    let grace = config.shutdown_grace;
    // Reconciliation runs while herald consumes, and stops with it.
    let (carried, reconciling) = match reconciler {
        None => (None, None),
        Some((r, carried)) => (
            Some(carried),
            Some(tokio::spawn(r.run(stop_consuming.clone()))),
        ),
    };
    let mut dispatcher = Dispatcher {
        key_warned: std::sync::Mutex::new(None),
        carried,
        consumer: current.clone(),
        tracker: tracker.clone(),
        metrics: metrics.clone(),
        dead_letters: dead_letters.clone(),
        abandon: abandon.clone(),
        routes: std::sync::RwLock::new(Arc::new(routes)),
        shared,
        running: config,
        reloads: reload_rx,
        fatal: fatal.clone(),
        max_alert_age,
        store_paused: None,
        health: health.clone(),
        recreated: Vec::new(),
        new_consumer: Box::new(move |k| source::consumer(k, ctx())),
    };
    dispatcher.consume(&stop_consuming).await;
    // Consuming also ends on a fatal error: stop the commit loop too.
    stop_consuming.cancel();
    if let Some(r) = reconciling {
        // It saves its progress as it stops.
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }

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
    let closing = futures::future::join_all(routes.iter().map(|r| r.pool.close()));
    if tokio::time::timeout(Duration::from_secs(5), closing)
        .await
        .is_err()
    {
        tracing::warn!("closing destination connections took longer than 5s");
    }
    let _ = commit_task.await;
    signal_task.abort();
    let consumer = current.read().unwrap_or_else(|p| p.into_inner()).clone();
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
    close_consumer(consumer).await;
    stop_http.cancel();
    listeners.stopped(Duration::from_secs(2)).await;
    tracing::info!("stopped");
    match fatal.reason() {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => Ok(()),
    }
}

/// Closing a consumer can hang in librdkafka (known rust-rdkafka issue):
/// bounded, so the process always goes on.
async fn close_consumer(consumer: Arc<KafkaConsumer>) {
    let close = tokio::task::spawn_blocking(move || {
        consumer.unsubscribe();
        drop(consumer);
    });
    if tokio::time::timeout(Duration::from_secs(5), close)
        .await
        .is_err()
    {
        tracing::warn!("kafka consumer close did not finish in 5s; going on");
    }
}

fn start_route(dest: Destination, shared: &Shared, paused: bool) -> Route {
    let start = if paused {
        Pool::start_paused
    } else {
        Pool::start
    };
    let pool = start(
        &dest.name,
        dest.notifier.clone(),
        dest.policy.clone(),
        dest.fingerprint,
        shared.clone(),
    );
    spawn_preflight(&dest);
    Route { dest, pool }
}

/// Parked deliveries of destinations the configuration no longer has (it
/// changed while herald was stopped) can never be delivered: dead-lettered
/// as `destination_removed`, not left in the store for ever.
fn dead_letter_orphans(shared: &Shared, routes: &[Arc<Route>]) {
    let Some(l) = &shared.ledger else { return };
    for name in l.parked_destinations() {
        if routes.iter().any(|r| r.dest.name == name) {
            continue;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            let n = delivery::sweeper::dead_letter_all(&shared, &name).await;
            tracing::warn!(destination = %name, dead_lettered = n, "parked deliveries of a destination no longer configured");
        });
    }
}

/// Expires old ledger entries, keeps the ledger gauges and `/readyz`
/// current, and after a store failure probes until the store works again.
async fn ledger_upkeep(
    ledger: Ledger,
    retention: ledger::Retention,
    sweep_every: Duration,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: CancellationToken,
) {
    let mut last_sweep = tokio::time::Instant::now();
    let mut first = true;
    loop {
        if !ledger.healthy() {
            ledger.probe().await;
        }
        if ledger.healthy() && (first || last_sweep.elapsed() >= sweep_every) {
            first = false;
            last_sweep = tokio::time::Instant::now();
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
        let l = ledger.clone();
        if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || l.len()).await {
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
fn spawn_preflight(d: &Destination) {
    let (name, notifier) = (d.name.clone(), d.notifier.clone());
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
    to_dispatcher: tokio::sync::mpsc::Sender<(Config, Vec<Destination>)>,
    metrics: Arc<Metrics>,
    live: Option<Arc<Metadata>>,
) {
    while hangup.recv().await.is_some() {
        tracing::info!(config = %path.display(), "SIGHUP received: reloading");
        // Type=notify-reload (systemd 253+) wants RELOADING=1 with the time, then READY=1.
        let mut states = vec![sd_notify::NotifyState::Reloading];
        states.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
        sd_notify_state(&states);
        let (p, live) = (path.clone(), live.clone());
        match tokio::task::spawn_blocking(move || destinations::load_with(&p, live.as_ref())).await
        {
            Ok(Ok(loaded)) => {
                if to_dispatcher.send(loaded).await.is_err() {
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
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM and SIGINT");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    stop.cancel();
}

type CurrentConsumer = Arc<std::sync::RwLock<Arc<KafkaConsumer>>>;

fn current(c: &CurrentConsumer) -> Arc<KafkaConsumer> {
    c.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Commits each partition's watermark every `interval` until `stop`.
async fn commit_loop(
    consumer: CurrentConsumer,
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
        metrics.in_flight_bytes.set(tracker.bytes() as i64);
        let marks = tracker.commit_candidates();
        if marks.is_empty() {
            continue;
        }
        let c = current(&consumer);
        let committer = c.clone();
        let result = tokio::task::spawn_blocking(move || {
            committer
                .commit(&source::to_tpl(&marks), CommitMode::Sync)
                .map(|_| marks)
        })
        .await;
        match result {
            Ok(Ok(marks)) => c.context().record_commits(&marks),
            Ok(Err(e)) => {
                metrics.commit_failures.inc();
                tracing::warn!(error = %e, "offset commit failed; will retry");
            }
            Err(e) => tracing::error!(error = %e, "commit task failed"),
        }
    }
}

type NewConsumer =
    Box<dyn Fn(&crate::config::KafkaConfig) -> anyhow::Result<KafkaConsumer> + Send + Sync>;

struct Dispatcher {
    /// When a message key other than the alert id was last warned about.
    key_warned: std::sync::Mutex<Option<Instant>>,
    /// What the topic carried, for reconciliation with Central.
    carried: Option<Arc<crate::central::reconcile::Carried>>,
    consumer: CurrentConsumer,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    dead_letters: Arc<DeadLetters>,
    abandon: CancellationToken,
    /// Replaced whole by a reload; a message is routed with one snapshot.
    routes: std::sync::RwLock<Arc<Vec<Arc<Route>>>>,
    shared: Shared,
    /// The config in force (for what a reload cannot change).
    running: Config,
    reloads: tokio::sync::mpsc::Receiver<(Config, Vec<Destination>)>,
    fatal: Fatal,
    max_alert_age: Option<Duration>,
    /// While the ledger cannot write: every partition is paused, and this
    /// holds, per partition, the lowest offset received and dropped since
    /// (read again once the store works).
    store_paused: Option<HashMap<Tp, i64>>,
    health: Arc<Health>,
    /// When fatal consumer errors were recovered from.
    recreated: Vec<Instant>,
    new_consumer: NewConsumer,
}

impl Dispatcher {
    fn routes(&self) -> Arc<Vec<Arc<Route>>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn consumer(&self) -> Arc<KafkaConsumer> {
        current(&self.consumer)
    }

    async fn consume(&mut self, stop: &CancellationToken) {
        let fatal = self.fatal.clone();
        let mut store_check = tokio::time::interval(Duration::from_millis(250));
        loop {
            let consumer = self.consumer();
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = fatal.triggered() => return,
                Some(loaded) = self.reloads.recv() => self.reload(loaded),
                _ = self.tracker.resume.notified() => self.apply_resumes(),
                _ = store_check.tick() => {
                    self.check_store().await;
                    if !self.check_group().await {
                        return;
                    }
                }
                msg = consumer.recv() => match msg {
                    Ok(m) => {
                        let replay = crate::cli::dlq::replay_target(m.headers());
                        let origin = Origin {
                            topic: m.topic().to_string(),
                            partition: m.partition(),
                            offset: m.offset(),
                            key: m.key().map(<[u8]>::to_vec),
                            value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        };
                        drop(m);
                        if let Some(dropped) = &mut self.store_paused {
                            // Paused for the store: a message already fetched is
                            // read again once the store works.
                            let tp = Tp::new(&origin.topic, origin.partition);
                            let low = dropped.entry(tp).or_insert(origin.offset);
                            *low = (*low).min(origin.offset);
                            continue;
                        }
                        self.handle(origin, replay);
                        self.apply_pauses();
                    }
                    Err(rdkafka::error::KafkaError::MessageConsumptionFatal(code)) => {
                        if !self.recreate(format!("{code:?}")).await {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka consume error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }

    /// A fatal consumer error (a static member fenced after a broker restart
    /// slower than the session timeout): a new consumer joins the group in
    /// this process. The old generation's unfinished work is forgotten (it is
    /// uncommitted, so read again; the ledger keeps it from being notified
    /// twice); the ledger, parked deliveries and listeners stay. Past
    /// [`MAX_RECREATES`] in [`RECREATE_WINDOW`], herald exits non-zero.
    async fn recreate(&mut self, why: String) -> bool {
        let now = Instant::now();
        self.recreated
            .retain(|t| now.duration_since(*t) < RECREATE_WINDOW);
        if self.recreated.len() >= MAX_RECREATES {
            self.fatal.trigger(format!(
                "fatal kafka consumer error: {why} ({MAX_RECREATES} new consumers in {} did not help)",
                humantime::format_duration(RECREATE_WINDOW)
            ));
            return false;
        }
        self.recreated.push(now);
        tracing::error!(error = %why, attempt = self.recreated.len(), "fatal kafka consumer error: replacing the consumer");
        // The old consumer's callbacks, still running while it closes, must
        // not touch what the new consumer will own.
        self.consumer().context().retire();
        self.tracker.revoke_all();
        self.metrics.consumers_recreated.inc();
        match (self.new_consumer)(&self.running.kafka) {
            Ok(c) => {
                let old = std::mem::replace(
                    &mut *self.consumer.write().unwrap_or_else(|p| p.into_inner()),
                    Arc::new(c),
                );
                tokio::spawn(close_consumer(old));
                true
            }
            Err(e) => {
                self.fatal.trigger(format!(
                    "fatal kafka consumer error: {why}; no new consumer: {e}"
                ));
                false
            }
        }
    }

    /// A consumer out of its group past `kafka.rejoin_timeout`, with its
    /// group coordinator connection (or every broker) down to it, while a
    /// broker answers another client, is replaced: after a broker restart
    /// librdkafka can stay wedged that way (its join request queued on a
    /// connection that never comes up) although the broker is back. A
    /// consumer connected to its coordinator that still cannot join (a slow
    /// rebalance) is left alone. False when herald must stop.
    async fn check_group(&mut self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let limit = self.running.kafka.rejoin_timeout.0;
        let wedged =
            self.health.coordinator_down.load(Relaxed) || self.health.brokers_down.load(Relaxed);
        let Some(out) = self
            .health
            .group_unjoined_for()
            .filter(|out| *out >= limit && wedged)
        else {
            return true;
        };
        // The next check is a whole rejoin_timeout away, whatever the answer.
        self.health.group_reset();
        let out = humantime::format_duration(Duration::from_secs(out.as_secs()));
        if !self
            .dead_letters
            .brokers_answer(Duration::from_secs(5))
            .await
        {
            tracing::warn!(group = %self.running.kafka.group_id, %out, "out of the consumer group, and no broker answers either: waiting");
            return true;
        }
        self.recreate(format!(
            "not a member of group {:?} for {out} while a broker answers",
            self.running.kafka.group_id
        ))
        .await
    }

    /// Pauses everything while the ledger cannot write; once it can, reads
    /// again from where each partition's unfinished messages begin.
    async fn check_store(&mut self) {
        let Some(l) = &self.shared.ledger else { return };
        match (&self.store_paused, l.healthy()) {
            (None, false) => {
                let consumer = self.consumer();
                if let Ok(assigned) = consumer.assignment() {
                    if let Err(e) = consumer.pause(&assigned) {
                        tracing::warn!(error = %e, "pause failed");
                    }
                }
                tracing::error!("ledger store failed: every partition paused until it works again");
                self.store_paused = Some(HashMap::new());
            }
            (Some(_), true) => {
                let dropped = self.store_paused.take().unwrap_or_default();
                let consumer = self.consumer();
                let tracker = self.tracker.clone();
                let result = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
                    let mut seeks = 0;
                    for tp in tracker.assigned() {
                        let from = [tracker.rewind(&tp), dropped.get(&tp).copied()]
                            .into_iter()
                            .flatten()
                            .min();
                        if let Some(offset) = from {
                            consumer.seek(
                                &tp.topic,
                                tp.partition,
                                rdkafka::Offset::Offset(offset),
                                Duration::from_secs(10),
                            )?;
                            seeks += 1;
                        }
                    }
                    let assigned = consumer.assignment()?;
                    consumer.resume(&assigned)?;
                    Ok(seeks)
                })
                .await;
                match result {
                    Ok(Ok(n)) => tracing::info!(rewound = n, "ledger store works again: consuming again from the first unfinished messages"),
                    Ok(Err(e)) => self.fatal.trigger(format!("cannot resume after the store recovered: {e}")),
                    Err(e) => self.fatal.trigger(format!("resume task failed: {e}")),
                }
            }
            _ => {}
        }
    }

    /// Applies a validated config: unchanged destinations keep their pool
    /// (queues, breakers, connections); a changed one gets a new pool while
    /// the old one finishes its queue; a removed one finishes its queue, and
    /// then its parked deliveries are dead-lettered (`destination_removed`).
    fn reload(&mut self, (cfg, destinations): (Config, Vec<Destination>)) {
        let old = self.routes();
        let mut by_name: HashMap<String, Arc<Route>> = old
            .iter()
            .map(|r| (r.dest.name.clone(), r.clone()))
            .collect();
        let (mut added, mut changed, mut unchanged) = (Vec::new(), Vec::new(), 0);
        let mut next = Vec::new();
        for d in destinations {
            let name = d.name.clone();
            match by_name.remove(&name) {
                Some(r) if r.pool.fingerprint == d.fingerprint => {
                    unchanged += 1;
                    next.push(r);
                }
                Some(r) => {
                    let fresh = Arc::new(start_route(d, &self.shared, true));
                    let successor = fresh.pool.clone();
                    tokio::spawn(async move {
                        r.pool.retire().await;
                        r.pool.close().await;
                        successor.allow_sweep();
                    });
                    changed.push(name);
                    next.push(fresh);
                }
                None => {
                    added.push(name);
                    next.push(Arc::new(start_route(d, &self.shared, false)));
                }
            }
        }
        let removed: Vec<String> = by_name.keys().cloned().collect();
        for (name, r) in by_name {
            let shared = self.shared.clone();
            tokio::spawn(async move {
                r.pool.retire().await;
                r.pool.close().await;
                let n = delivery::sweeper::dead_letter_all(&shared, &name).await;
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
        match self.consumer().pause(&source::partitions_tpl(&tps)) {
            Ok(()) => tracing::debug!(partitions = tps.len(), "paused for backpressure"),
            Err(e) => tracing::warn!(error = %e, "pause failed"),
        }
    }

    fn apply_resumes(&self) {
        if self.store_paused.is_some() {
            return;
        }
        let tps = self.tracker.to_resume();
        if tps.is_empty() {
            return;
        }
        match self.consumer().resume(&source::partitions_tpl(&tps)) {
            Ok(()) => tracing::debug!(partitions = tps.len(), "resumed"),
            Err(e) => tracing::warn!(error = %e, "resume failed"),
        }
    }

    /// Counts an alert whose message key is not its id, and warns at most
    /// every 10 minutes: its states may land on different partitions, out of
    /// order, and (with several instances) in different hands. Ingest and
    /// reconciliation key by alert id.
    fn check_key(&self, origin: &Origin, id: &str) {
        if origin.key.as_deref() == Some(id.as_bytes()) {
            return;
        }
        self.metrics
            .alert_key_mismatches
            .with_label_values(&[&origin.topic])
            .inc();
        let mut last = self.key_warned.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(600)) {
            *last = Some(Instant::now());
            tracing::warn!(
                topic = %origin.topic,
                partition = origin.partition,
                offset = origin.offset,
                keyed = origin.key.is_some(),
                "an alert's message key is not its alert id: the states of one alert may land on different partitions and arrive out of order; produce with the alert id as key (herald's ingest and reconciliation do); counted in herald_alert_key_mismatches_total"
            );
        }
    }

    /// One message: decoded, routed, and handed to each destination's pool,
    /// none of which makes it wait. A replayed message goes to its one
    /// destination, through that destination's routing unless forced.
    fn handle(&self, origin: Origin, replay: Option<crate::cli::dlq::Replay>) {
        let tp = Tp::new(&origin.topic, origin.partition);
        self.metrics
            .messages_consumed
            .with_label_values(&[&origin.topic, &origin.partition.to_string()])
            .inc();
        // What a message holds while in flight: its value, the minified copy
        // and the decoded fields: about three times the value.
        let held = origin.value.len().saturating_mul(3);
        let Some(token) = self.tracker.begin(&tp, origin.offset, held) else {
            tracing::debug!(topic = %origin.topic, partition = origin.partition, "message of an unassigned partition");
            return;
        };
        let event = match decode(&origin.value, &self.shared.limits) {
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
                let Some(ticket) = Ticket::split(self.tracker.clone(), token, 1).pop() else {
                    return;
                };
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
        if let (None, Event::Alert(a)) = (&replay, &event) {
            self.check_key(&origin, &a.fields.id);
        }
        if let (Some(carried), Event::Alert(a)) = (&self.carried, &event) {
            let time = a.fields.time.map_or(0, |t| t.0.timestamp_millis());
            carried.observe(&a.fields.id, a.fields.state, time);
        }
        if let (Some(max_age), Event::Alert(a)) = (self.max_alert_age, &event) {
            if let Some(t) = a.fields.time {
                // A time in the future is not old (and not "new for ever":
                // the ledger clamps it).
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
        let chosen: Vec<&Arc<Route>> = routes
            .iter()
            .filter(|r| {
                if let Some(only) = &replay {
                    if r.dest.name != only.destination {
                        return false;
                    }
                    if only.force {
                        return true;
                    }
                }
                match r.dest.decide(&event) {
                    Ok(()) => true,
                    Err(why) => {
                        tracing::trace!(destination = %r.dest.name, reason = %why, "not routed");
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
        let key = ledger::key_of(&event);
        let inbound = Arc::new(Inbound { origin, event, key });
        for (route, ticket) in chosen.into_iter().zip(tickets) {
            route.pool.dispatch(inbound.clone(), ticket);
        }
    }
}
