//! The delivery state machine, its lanes and its sweeper, without Kafka: a
//! scripted notifier, a real ledger in a temporary directory, dead letters
//! kept in memory, tickets from a real offset tracker.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::deadletter::DeadLetter;
use crate::ledger::{Ledger, Parked, Row};
use crate::model::{decode, Limits};
use crate::notifiers::{
    Annotation, FailureReason, Notifier, RenderContext, SendError, SendMeta, Target,
};
use crate::source::tracker::{Limits as InFlight, Tp, Tracker};

/// What the scripted notifier answers, in order; then `Ok`.
#[derive(Clone)]
enum Answer {
    Ok,
    Fail(SendError),
    /// Never answers (the attempt times out).
    Hang,
    Panic,
}

#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Answer>>,
    /// (target value, payload) of every send.
    sent: Mutex<Vec<(Option<String>, String)>>,
    render_error: bool,
    annotation: Option<Annotation>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Script")
    }
}

impl Script {
    fn answers(answers: Vec<Answer>) -> Arc<Script> {
        Arc::new(Script {
            answers: Mutex::new(answers.into()),
            ..Script::default()
        })
    }

    fn sent(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|(_, p)| p.clone())
            .collect()
    }
}

impl Notifier for Script {
    fn can_resolve(&self) -> bool {
        true
    }

    fn annotation(&self) -> Option<&Annotation> {
        self.annotation.as_ref()
    }

    fn render(&self, event: &Event, _t: &Target, _c: &RenderContext) -> Result<Vec<u8>, String> {
        if self.render_error {
            return Err("cannot render this".into());
        }
        Ok(match event {
            Event::Alert(a) => format!("{}:{}", a.fields.id, a.fields.state.as_str()),
            Event::Audit(_) => "audit".into(),
        }
        .into_bytes())
    }

    fn send<'a>(
        &'a self,
        _event: &'a Event,
        target: &'a Target,
        payload: &'a [u8],
        _meta: &'a SendMeta,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let answer = self
                .answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Answer::Ok);
            self.sent.lock().unwrap().push((
                target.value.clone(),
                String::from_utf8_lossy(payload).into_owned(),
            ));
            match answer {
                Answer::Ok => Ok(()),
                Answer::Fail(e) => Err(e),
                Answer::Hang => std::future::pending().await,
                Answer::Panic => panic!("a notifier bug"),
            }
        })
    }
}

#[derive(Default)]
struct Letters(Mutex<Vec<DeadLetter>>);

impl DeadLetterSink for Letters {
    fn write<'a>(
        &'a self,
        record: &'a DeadLetter,
        _key: Option<&'a [u8]>,
        _cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, bool> {
        self.0.lock().unwrap().push(record.clone());
        Box::pin(async { true })
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    letters: Arc<Letters>,
    shared: Shared,
    tracker: Arc<Tracker>,
    tp: Tp,
    offset: std::sync::atomic::AtomicI64,
}

fn fast_policy() -> Policy {
    Policy {
        retry_max_attempts: 3,
        retry_min_delay: Duration::from_millis(1),
        retry_max_delay: Duration::from_millis(5),
        retry_max_pass: Duration::from_secs(2),
        timeout: Duration::from_millis(200),
        breaker_failures: 100,
        breaker_cooldown: Duration::from_millis(300),
        park_retry_min: Duration::from_millis(50),
        park_retry_max: Duration::from_millis(200),
        ..Policy::default()
    }
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let ledger = Ledger::open(dir.path(), metrics.clone()).unwrap();
        let letters = Arc::new(Letters::default());
        let shared = Shared {
            metrics,
            dead_letters: letters.clone(),
            ledger: Some(ledger.clone()),
            abandon: CancellationToken::new(),
            clock: Arc::new(SystemClock::new()),
            failure_log_interval: Duration::from_secs(60),
            limits: Limits::default(),
            fatal: Fatal::default(),
            retrying: Retrying::default(),
        };
        let tracker = Arc::new(Tracker::new(InFlight {
            per_partition: 1000,
            total: 1000,
            bytes: usize::MAX,
        }));
        let tp = Tp::new("t", 0);
        tracker.assign(std::slice::from_ref(&tp));
        Rig {
            _dir: dir,
            ledger,
            letters,
            shared,
            tracker,
            tp,
            offset: Default::default(),
        }
    }

    fn machine(&self, notifier: Arc<Script>, policy: Policy) -> Machine {
        Machine::new(
            "d",
            notifier,
            policy,
            Target::default(),
            self.shared.clone(),
        )
    }

    /// A fresh delivery of `json` (an alert) with its ticket.
    fn fresh(&self, json: &str) -> Delivery {
        let offset = self
            .offset
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = self.tracker.begin(&self.tp, offset, json.len()).unwrap();
        let ticket = Ticket::split(self.tracker.clone(), token, 1).pop().unwrap();
        Delivery {
            message: inbound(json, offset),
            target: Target::default(),
            ticket: Some(ticket),
            parked: None,
            enqueued: tokio::time::Instant::now(),
        }
    }

    /// Waits until every write queued so far is durable (the writer keeps
    /// their order, so a later durable write proves the earlier ones).
    async fn settle(&self) {
        self.ledger.flush().await.unwrap();
    }

    /// The parked rows, oldest first.
    fn parked(&self) -> Vec<(u64, Box<Parked>)> {
        self.ledger
            .page(0, 1000)
            .unwrap()
            .into_iter()
            .filter_map(|(id, _)| match self.ledger.row(id).unwrap() {
                Some(Row::Parked(p)) => Some((id, p)),
                _ => None,
            })
            .collect()
    }

    /// A parked row as the sweeper hands it to a lane.
    fn retry(&self, id: u64, p: Box<Parked>) -> Delivery {
        Delivery {
            message: Arc::new(Inbound {
                event: decode(&p.value, &Limits::default()).unwrap(),
                origin: sweeper::origin_of(&p),
                key: p.key.clone(),
            }),
            target: Target::default(),
            ticket: None,
            parked: Some((id, p)),
            enqueued: tokio::time::Instant::now(),
        }
    }

    /// Offsets whose every delivery is final (the committable watermark).
    async fn watermark(&self) -> i64 {
        // Durable records finish their tickets a moment later.
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if self.tracker.total() == 0 {
                break;
            }
        }
        self.tracker
            .commit_candidates()
            .first()
            .map(|(_, w)| *w)
            .unwrap_or(0)
    }
}

fn inbound(json: &str, offset: i64) -> Arc<Inbound> {
    let event = decode(json.as_bytes(), &Limits::default()).unwrap();
    Arc::new(Inbound {
        origin: Origin {
            topic: "t".into(),
            partition: 0,
            offset,
            key: None,
            value: json.as_bytes().to_vec(),
        },
        key: crate::ledger::key_of(&event),
        event,
    })
}

fn alert(id: &str, state: &str) -> String {
    format!(
        r#"{{"id":"{id}","policy":{{"name":"P"}},"state":"{state}","time":"2024-05-01T12:00:00Z"}}"#
    )
}

fn server_error() -> SendError {
    SendError::retryable(FailureReason::ServerError, "503").with_status(503)
}

#[tokio::test]
async fn delivered_once_then_skipped_and_the_ticket_waits_for_the_record() {
    let rig = Rig::new();
    let script = Script::answers(vec![]);
    let m = rig.machine(script.clone(), fast_policy());
    assert_eq!(
        m.run(rig.fresh(&alert("a1", "ACTIVE"))).await,
        Outcome::Delivered
    );
    assert_eq!(
        m.run(rig.fresh(&alert("a1", "ACTIVE"))).await,
        Outcome::Skipped("already notified")
    );
    assert_eq!(script.sent(), ["a1:ACTIVE"]);
    assert_eq!(rig.watermark().await, 2, "both messages final");
    let e = rig.ledger.get("d", "a1").unwrap().unwrap();
    assert_eq!(e.state, crate::model::AlertState::Active);
}

#[tokio::test]
async fn retryable_failures_are_retried_then_parked_and_a_retry_delivers() {
    let rig = Rig::new();
    let script = Script::answers(vec![
        Answer::Fail(server_error()),
        Answer::Fail(server_error()),
        Answer::Fail(server_error()),
    ]);
    let m = rig.machine(script.clone(), fast_policy());
    assert_eq!(
        m.run(rig.fresh(&alert("a1", "ACTIVE"))).await,
        Outcome::Parked(FailureReason::ServerError)
    );
    assert_eq!(script.sent().len(), 3, "retry_max_attempts");
    assert_eq!(rig.watermark().await, 1, "a parked delivery is final");
    let parked = rig.parked();
    assert_eq!(parked.len(), 1);
    let (id, p) = parked[0].clone();
    assert_eq!((p.attempts, p.rounds), (3, 0));
    assert!(p.last_error.contains("503"), "{}", p.last_error);
    // The retry goes through the same machine: delivered, row gone, recorded.
    assert_eq!(m.run(rig.retry(id, p)).await, Outcome::Delivered);
    rig.settle().await;
    assert!(rig.parked().is_empty());
    assert!(rig.ledger.get("d", "a1").unwrap().is_some());
}

#[tokio::test]
async fn a_permanent_failure_or_a_render_error_is_dead_lettered() {
    let rig = Rig::new();
    let bad = SendError::permanent(FailureReason::ClientError, "400").with_status(400);
    let script = Script::answers(vec![Answer::Fail(bad)]);
    let m = rig.machine(script.clone(), fast_policy());
    assert_eq!(
        m.run(rig.fresh(&alert("a1", "ACTIVE"))).await,
        Outcome::DeadLettered("client_error".into())
    );
    assert_eq!(script.sent().len(), 1, "a 4xx is not retried");
    let letters = rig.letters.0.lock().unwrap().clone();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (
            letters[0].kind.as_str(),
            letters[0].reason.as_str(),
            letters[0].attempts
        ),
        ("delivery_failed", "client_error", 1)
    );
    assert_eq!(letters[0].destination.as_deref(), Some("d"));
    // A status override makes 400 retryable for this destination.
    let retry_400 = Policy {
        retry_statuses: vec![400],
        ..fast_policy()
    };
    let again = SendError::permanent(FailureReason::ClientError, "400").with_status(400);
    let script = Script::answers(vec![Answer::Fail(again)]);
    let m = rig.machine(script.clone(), retry_400);
    assert_eq!(
        m.run(rig.fresh(&alert("a2", "ACTIVE"))).await,
        Outcome::Delivered
    );
    assert_eq!(script.sent().len(), 2);
    // Rendering is permanent: nothing is sent.
    let broken = Arc::new(Script {
        render_error: true,
        ..Script::default()
    });
    let m = rig.machine(broken.clone(), fast_policy());
    assert_eq!(
        m.run(rig.fresh(&alert("a3", "ACTIVE"))).await,
        Outcome::DeadLettered("render".into())
    );
    assert!(broken.sent().is_empty());
    assert_eq!(rig.watermark().await, 3);
}

/// A 429 with `Retry-After` holds the whole target for that long (a
/// delivery behind it parks until then, without an attempt), counts no
/// failure, and a 4xx refusal never opens the breaker.
#[tokio::test]
async fn a_throttle_holds_the_target_and_refusals_do_not_open_the_breaker() {
    let rig = Rig::new();
    let policy = Policy {
        breaker_failures: 1,
        retry_max_attempts: 1,
        park_retry_max: Duration::from_secs(10),
        ..fast_policy()
    };
    let throttle = SendError::retryable(FailureReason::RateLimited, "429")
        .with_status(429)
        .with_retry_after(Some(Duration::from_secs(2)));
    let refusal = SendError::permanent(FailureReason::ClientError, "400").with_status(400);
    let script = Script::answers(vec![
        Answer::Fail(refusal.clone()),
        Answer::Fail(refusal),
        Answer::Fail(throttle),
    ]);
    let m = rig.machine(script.clone(), policy);
    for id in ["a1", "a2"] {
        assert_eq!(
            m.run(rig.fresh(&alert(id, "ACTIVE"))).await,
            Outcome::DeadLettered("client_error".into())
        );
    }
    assert!(m.breaker_holds_back().is_none(), "refusals do not open it");
    assert_eq!(
        m.run(rig.fresh(&alert("a3", "ACTIVE"))).await,
        Outcome::Parked(FailureReason::RateLimited)
    );
    let held = m.breaker_holds_back().expect("held");
    assert!(held > Duration::from_millis(1000) && held <= Duration::from_secs(2));
    assert_eq!(
        m.run(rig.fresh(&alert("a4", "ACTIVE"))).await,
        Outcome::Parked(FailureReason::BreakerOpen)
    );
    assert_eq!(script.sent().len(), 3, "no attempt while held");
    let parked = rig.parked();
    let wait = parked[1].1.next_attempt_ms - parked[1].1.parked_at_ms;
    assert!(
        (1000..=2000).contains(&wait),
        "parked for the rest of the hold, not a cool-down (300 ms): {wait} ms"
    );
}

#[tokio::test]
async fn an_open_breaker_parks_without_an_attempt_until_its_cooldown() {
    let rig = Rig::new();
    let policy = Policy {
        breaker_failures: 1,
        retry_max_attempts: 1,
        park_retry_max: Duration::from_millis(400),
        ..fast_policy()
    };
    let script = Script::answers(vec![Answer::Fail(server_error())]);
    let m = rig.machine(script.clone(), policy);
    assert_eq!(
        m.run(rig.fresh(&alert("a1", "ACTIVE"))).await,
        Outcome::Parked(FailureReason::ServerError)
    );
    assert!(m.breaker_holds_back().is_some());
    assert_eq!(
        m.run(rig.fresh(&alert("a2", "ACTIVE"))).await,
        Outcome::Parked(FailureReason::BreakerOpen)
    );
    assert_eq!(script.sent().len(), 1, "no attempt while open");
    let parked = rig.parked();
    // Parked until the cool-down that began with the first failure ends
    // (what is left of it, not a new one), give or take this test's own
    // time on a loaded machine.
    let end = parked[0].1.parked_at_ms + 300;
    assert!(
        (end - 200..=end + 100).contains(&parked[1].1.next_attempt_ms),
        "not at the end of the cool-down ({end}): {:?}",
        parked[1].1
    );
    tokio::time::sleep(Duration::from_millis(320)).await;
    let (id, p) = parked[1].clone();
    assert_eq!(
        m.run(rig.retry(id, p)).await,
        Outcome::Delivered,
        "the probe"
    );
    assert!(m.breaker_holds_back().is_none());
}

#[tokio::test]
async fn a_resolution_waits_behind_its_parked_trigger() {
    let rig = Rig::new();
    let policy = Policy {
        retry_max_attempts: 1,
        ..fast_policy()
    };
    let script = Script::answers(vec![Answer::Fail(server_error())]);
    let m = rig.machine(script.clone(), policy);
    assert_eq!(
        m.run(rig.fresh(&alert("a1", "ACTIVE"))).await,
        Outcome::Parked(FailureReason::ServerError)
    );
    assert_eq!(
        m.run(rig.fresh(&alert("a1", "RESOLVED"))).await,
        Outcome::Parked(FailureReason::Ordering)
    );
    assert_eq!(script.sent().len(), 1, "the resolution was not tried");
    let parked = rig.parked();
    let (trigger, resolution) = (parked[0].clone(), parked[1].clone());
    // Tried first, the resolution still waits (and is rescheduled).
    assert_eq!(
        m.run(rig.retry(resolution.0, resolution.1)).await,
        Outcome::Parked(FailureReason::Ordering)
    );
    assert_eq!(
        m.run(rig.retry(trigger.0, trigger.1)).await,
        Outcome::Delivered
    );
    // At once, before the trigger's removal is durable: a delivered row no
    // longer holds its key back.
    let resolution = rig.parked().pop().unwrap();
    assert_eq!(
        m.run(rig.retry(resolution.0, resolution.1)).await,
        Outcome::Delivered
    );
    assert_eq!(script.sent(), ["a1:ACTIVE", "a1:ACTIVE", "a1:RESOLVED"]);
    rig.settle().await;
    assert!(rig.parked().is_empty());
}

#[tokio::test]
async fn retry_after_is_honoured_and_an_absurd_one_is_bounded() {
    let rig = Rig::new();
    let later = |secs: u64| {
        SendError::retryable(FailureReason::RateLimited, "429")
            .with_retry_after(Some(Duration::from_secs(secs)))
    };
    let policy = Policy {
        retry_max_pass: Duration::from_secs(5),
        park_retry_max: Duration::from_secs(1),
        ..fast_policy()
    };
    let script = Script::answers(vec![Answer::Fail(later(1))]);
    let m = rig.machine(script.clone(), policy.clone());
    let started = tokio::time::Instant::now();
    assert_eq!(
        m.run(rig.fresh(&alert("a1", "ACTIVE"))).await,
        Outcome::Delivered
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited Retry-After"
    );
    // u64::MAX seconds: no overflow, no worker panic; bounded by
    // park_retry_max it exceeds the pass, so the delivery parks for that long.
    let script = Script::answers(vec![Answer::Fail(later(u64::MAX))]);
    let m = rig.machine(
        script.clone(),
        Policy {
            retry_max_pass: Duration::from_millis(500),
            ..policy
        },
    );
    assert_eq!(
        m.run(rig.fresh(&alert("a2", "ACTIVE"))).await,
        Outcome::Parked(FailureReason::RateLimited)
    );
    let (_, p) = rig.parked().pop().unwrap();
    assert_eq!(p.next_attempt_ms - p.parked_at_ms, 1000);
}

#[tokio::test]
async fn a_hung_attempt_times_out_and_is_retried() {
    let rig = Rig::new();
    let script = Script::answers(vec![Answer::Hang]);
    let m = rig.machine(script.clone(), fast_policy());
    assert_eq!(
        m.run(rig.fresh(&alert("a1", "ACTIVE"))).await,
        Outcome::Delivered
    );
    assert_eq!(script.sent().len(), 2);
}

#[tokio::test]
async fn parked_longer_than_park_max_age_is_dead_lettered() {
    let rig = Rig::new();
    let policy = Policy {
        retry_max_attempts: 1,
        park_max_age: Duration::from_millis(100),
        ..fast_policy()
    };
    let script = Script::answers(vec![
        Answer::Fail(server_error()),
        Answer::Fail(server_error()),
    ]);
    let m = rig.machine(script.clone(), policy);
    m.run(rig.fresh(&alert("a1", "ACTIVE"))).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    let (id, p) = rig.parked().pop().unwrap();
    assert_eq!(
        m.run(rig.retry(id, p)).await,
        Outcome::DeadLettered("server_error".into())
    );
    assert!(rig.parked().is_empty());
    let letter = rig.letters.0.lock().unwrap().pop().unwrap();
    assert_eq!(letter.attempts, 2);
    assert!(letter.last_error.unwrap().starts_with("parked for "));
}

#[tokio::test]
async fn a_failed_store_abandons_without_sending_and_keeps_the_offset() {
    let rig = Rig::new();
    let script = Script::answers(vec![]);
    let m = rig.machine(script.clone(), fast_policy());
    rig.ledger.break_for_test();
    assert_eq!(
        m.run(rig.fresh(&alert("a1", "ACTIVE"))).await,
        Outcome::Abandoned
    );
    assert!(
        script.sent().is_empty(),
        "nothing sent that cannot be recorded"
    );
    assert_eq!(rig.watermark().await, 0, "its offset is not committed");
}

#[tokio::test]
async fn a_removed_destination_s_parked_deliveries_are_dead_lettered() {
    let rig = Rig::new();
    let policy = Policy {
        retry_max_attempts: 1,
        ..fast_policy()
    };
    let script = Script::answers(vec![
        Answer::Fail(server_error()),
        Answer::Fail(server_error()),
    ]);
    let m = rig.machine(script.clone(), policy);
    m.run(rig.fresh(&alert("a1", "ACTIVE"))).await;
    m.run(rig.fresh(&alert("a2", "ACTIVE"))).await;
    assert_eq!(sweeper::dead_letter_all(&rig.shared, "d").await, 2);
    assert!(rig.parked().is_empty());
    let letters = rig.letters.0.lock().unwrap().clone();
    assert_eq!(
        letters
            .iter()
            .map(|l| l.reason.as_str())
            .collect::<Vec<_>>(),
        ["destination_removed", "destination_removed"]
    );
}

#[tokio::test]
async fn without_a_ledger_it_retries_until_delivered() {
    let mut rig = Rig::new();
    rig.shared.ledger = None;
    let script = Script::answers(vec![Answer::Fail(server_error()); 5]);
    let m = rig.machine(script.clone(), fast_policy());
    assert_eq!(
        m.run(rig.fresh(&alert("a1", "ACTIVE"))).await,
        Outcome::Delivered
    );
    assert_eq!(script.sent().len(), 6);
}

#[tokio::test]
async fn a_lane_keeps_each_key_in_order_and_parks_when_full() {
    let rig = Rig::new();
    let script = Script::answers(vec![]);
    let lane = Arc::new(Lane::new(rig.machine(
        script.clone(),
        Policy {
            workers: 4,
            queue_size: 3,
            ..fast_policy()
        },
    )));
    for d in [
        rig.fresh(&alert("k", "ACTIVE")),
        rig.fresh(&alert("k", "RESOLVED")),
        rig.fresh(&alert("other", "ACTIVE")),
    ] {
        assert!(lane.offer(d).is_ok());
    }
    assert!(
        lane.offer(rig.fresh(&alert("more", "ACTIVE"))).is_err(),
        "a full lane gives the delivery back"
    );
    for _ in 0..200 {
        if lane.idle(Duration::ZERO) && script.sent().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sent = script.sent();
    let k: Vec<&String> = sent.iter().filter(|s| s.starts_with("k:")).collect();
    assert_eq!(k, ["k:ACTIVE", "k:RESOLVED"], "in order, never at once");
    assert!(sent.contains(&"other:ACTIVE".to_string()));
}

#[tokio::test]
async fn a_panicking_worker_stops_herald() {
    let rig = Rig::new();
    let script = Script::answers(vec![Answer::Panic]);
    let lane = Arc::new(Lane::new(rig.machine(script, fast_policy())));
    assert!(lane.offer(rig.fresh(&alert("a1", "ACTIVE"))).is_ok());
    tokio::time::timeout(Duration::from_secs(5), rig.shared.fatal.triggered())
        .await
        .expect("fatal fires");
    let why = rig.shared.fatal.reason().unwrap();
    assert!(
        why.starts_with("a delivery worker of destination d panicked: a notifier bug"),
        "{why}"
    );
}

#[tokio::test]
async fn a_pool_refuses_a_target_it_may_not_send_to_and_parks_what_finds_no_room() {
    let rig = Rig::new();
    let kind = crate::notifiers::target::TargetKind::JiraProject {
        allowed: vec!["OK".into()],
    };
    let script = Arc::new(Script {
        annotation: Some(Annotation {
            key: "project".into(),
            kind,
            default_shown: "SEC".into(),
            metadata: Default::default(),
        }),
        answers: Mutex::new(vec![Answer::Hang; 8].into()),
        ..Script::default()
    });
    let policy = Policy {
        workers: 1,
        queue_size: 1,
        max_targets: 2,
        timeout: Duration::from_secs(30),
        ..fast_policy()
    };
    let pool = Pool::start("d", script.clone(), policy, 0, rig.shared.clone());
    let annotated = |id: &str, project: &str| {
        format!(
            r#"{{"id":"{id}","policy":{{}},"deployment":{{"annotations":{{"project":"{project}"}}}}}}"#
        )
    };
    let send = |json: String| {
        let d = rig.fresh(&json);
        pool.dispatch(d.message, d.ticket.unwrap());
    };
    send(annotated("x1", "NOPE"));
    send(annotated("x2", "OK")); // hangs in the OK lane
    for _ in 0..200 {
        if script.sent().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    send(annotated("x3", "OK")); // queued
    send(annotated("x4", "OK")); // the lane is full: parked
    for _ in 0..200 {
        if rig.letters.0.lock().unwrap().len() == 1 && rig.parked().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let letters = rig.letters.0.lock().unwrap().clone();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, "target_not_allowed");
    assert_eq!(
        letters[0].last_error.as_deref(),
        Some("annotation project: project NOPE is not in allowed_targets")
    );
    let parked = rig.parked();
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (parked[0].1.key.as_str(), parked[0].1.target.as_str()),
        ("x4", "OK")
    );
    assert!(
        parked[0].1.first_error.contains("queue_full"),
        "{}",
        parked[0].1.first_error
    );
    rig.shared.abandon.cancel();
}
