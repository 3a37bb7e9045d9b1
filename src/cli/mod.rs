//! The `herald` command line.

pub mod dlq;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::destinations::{self, Destination};
use crate::model::decode;
use crate::notifiers::{RenderContext, Target};
use crate::{app, telemetry};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Delivers RHACS alerts and audit events from Kafka, once and without loss"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file; print every error with its field path.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
        /// Also run each destination's start-up checks against it.
        #[arg(long)]
        online: bool,
    },
    /// Print exactly the bytes herald would send to one destination for one
    /// message value, without sending anything.
    Render {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, short)]
        destination: String,
        /// A file holding one Kafka message value; `-` or absent reads stdin.
        #[arg(long, short)]
        input: Option<PathBuf>,
        /// Fix the clock (RFC 3339) for fields that depend on the current time.
        #[arg(long)]
        now: Option<String>,
    },
    /// Explain where one message value would go and why, without sending it.
    Explain {
        #[arg(long, short)]
        config: PathBuf,
        /// A file holding one Kafka message value; `-` or absent reads stdin.
        #[arg(long, short)]
        input: Option<PathBuf>,
        /// Also print each payload (secrets masked).
        #[arg(long)]
        render: bool,
    },
    /// Send a destination's test message (Central's test payload); exit 1 on failure.
    Test {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, short)]
        destination: String,
    },
    /// Dead letters: list them, or replay delivery failures.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Parked deliveries.
    Parked {
        #[command(subcommand)]
        command: ParkedCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List dead letters from the dead-letter topic (or a dead_letter_file).
    List {
        #[arg(long, short)]
        config: PathBuf,
        /// Read this JSONL file instead of the topic.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print whole records as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Re-deliver the delivery failures of one destination (invalid input is
    /// listed, not replayable).
    Replay {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, short)]
        destination: String,
        /// Only records dead-lettered at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
        /// Deliver even what the destination's filters now refuse (a
        /// replayed message otherwise goes through routing as any other).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ParkedCommand {
    /// List parked deliveries, oldest first.
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("herald {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config, online } => match destinations::load(&config) {
            Ok((c, dests)) => {
                println!(
                    "{}: valid ({} destination{})",
                    config.display(),
                    dests.len(),
                    if dests.len() == 1 { "" } else { "s" }
                );
                for w in destinations::cleartext_warnings(&c, &dests) {
                    println!("warning: {w}");
                }
                if online {
                    return report(block_on(async move {
                        let mut failed = 0;
                        if let Some(central) = &c.central {
                            let mut errs = crate::config::Errors::default();
                            if let Some(client) =
                                crate::central::Client::build(central, None, &mut errs)
                            {
                                for check in
                                    crate::central::checks(&client, central.reconcile.is_some())
                                        .await
                                {
                                    failed += usize::from(check.result.is_err());
                                    println!("{}", check.line());
                                }
                            }
                        }
                        for d in &dests {
                            match d.notifier.preflight().await {
                                Ok(what) => println!("{}: ok: {what}", d.name),
                                Err(e) => {
                                    failed += 1;
                                    println!("{}: failed: {e}", d.name);
                                }
                            }
                        }
                        anyhow::ensure!(
                            failed == 0,
                            "{failed} check(s) failed (destinations' start-up checks, Central's API)"
                        );
                        Ok(())
                    }));
                }
                ExitCode::SUCCESS
            }
            Err(errs) => {
                eprintln!("{}: {} error(s)", config.display(), errs.list.len());
                for e in &errs.list {
                    eprintln!("{e}");
                }
                ExitCode::FAILURE
            }
        },
        Command::Render {
            config,
            destination,
            input,
            now,
        } => match render(&config, &destination, input, now) {
            Ok(bytes) => {
                let mut out = std::io::stdout().lock();
                if out.write_all(&bytes).and_then(|_| out.flush()).is_err() {
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("herald render: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Explain {
            config,
            input,
            render,
        } => match tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(explain(&config, input, render)))
        {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("herald explain: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Test {
            config,
            destination,
        } => report(block_on(async move {
            let (_, dests) = load(&config)?;
            let dest = find(&dests, &destination)?;
            let outcome = dest.notifier.test().await;
            dest.notifier.close().await;
            match outcome {
                Ok(what) => {
                    println!("{destination}: ok: {what}");
                    Ok(())
                }
                Err(e) => Err(anyhow::anyhow!("{destination}: failed: {e}")),
            }
        })),
        Command::Dlq { command } => report(block_on(dlq_command(command))),
        Command::Parked {
            command: ParkedCommand::List { config },
        } => report(block_on(async move {
            let (cfg, _) = load(&config)?;
            dlq::print_parked(&cfg).await
        })),
        Command::Run { config } => {
            let (cfg, dests, live) = match destinations::load_for_run(&config) {
                Ok(c) => c,
                Err(errs) => {
                    eprintln!("{}: invalid configuration", config.display());
                    for e in &errs.list {
                        eprintln!("{e}");
                    }
                    return ExitCode::FAILURE;
                }
            };
            telemetry::logs::init(
                &cfg.log.level,
                cfg.log.format == crate::config::LogFormat::Json,
            );
            // Blocking threads (ledger reads, commits) are few at a time;
            // a bound keeps a burst from starting hundreds (and their
            // allocator arenas).
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(32)
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(app::run(cfg, dests, live, config));
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "herald failed");
                    eprintln!("herald: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<(Config, Vec<Destination>)> {
    destinations::load(path).map_err(|errs| anyhow::anyhow!("invalid configuration:\n{errs}"))
}

fn find<'a>(dests: &'a [Destination], name: &str) -> anyhow::Result<&'a Destination> {
    dests.iter().find(|d| d.name == name).ok_or_else(|| {
        let names: Vec<&str> = dests.iter().map(|d| d.name.as_str()).collect();
        anyhow::anyhow!(
            "no destination named {name:?} (configured: {})",
            names.join(", ")
        )
    })
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(f)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dlq_command(command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List { config, file, json } => {
            let (cfg, _) = load(&config)?;
            let records = match file {
                Some(f) => dlq::read_file(&f)?,
                None => tokio::task::spawn_blocking(move || dlq::read_topic(&cfg)).await??,
            };
            dlq::print_list(&records, json);
            Ok(())
        }
        DlqCommand::Replay {
            config,
            destination,
            since,
            file,
            force,
        } => {
            let (cfg, dests) = load(&config)?;
            find(&dests, &destination)?;
            let cfg = std::sync::Arc::new(cfg);
            let since = since
                .map(|s| {
                    chrono::DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&chrono::Utc))
                })
                .transpose()
                .map_err(|e| anyhow::anyhow!("--since: not RFC 3339: {e}"))?;
            let records = match file {
                Some(f) => dlq::read_file(&f)?,
                None => {
                    let c = cfg.clone();
                    tokio::task::spawn_blocking(move || dlq::read_topic(&c)).await??
                }
            };
            let n = dlq::replay(&cfg, records, &destination, since, force).await?;
            println!("replayed {n} delivery failure(s) to {destination}");
            Ok(())
        }
    }
}

/// One message value from a file, or stdin for `-` or no file.
fn read_input(input: Option<&std::path::Path>) -> anyhow::Result<Vec<u8>> {
    let mut value = Vec::new();
    match input {
        Some(p) if p.as_os_str() != "-" => {
            value = std::fs::read(p)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
        }
        _ => {
            std::io::stdin().read_to_end(&mut value)?;
        }
    }
    Ok(value)
}

/// Why one event goes where it goes: per destination, the routing decision,
/// the annotation step that chose the target, and with `render` the payload
/// with its secrets masked. Nothing is sent and the ledger is not opened.
async fn explain(
    config: &std::path::Path,
    input: Option<PathBuf>,
    render: bool,
) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let (cfg, dests) = load(config)?;
    let value = read_input(input.as_deref())?;
    let event = decode(&value, &cfg.kafka.decode_limits())
        .map_err(|e| anyhow::anyhow!("invalid message (it would be dead-lettered): {e}"))?;
    let ledger = dlq::LedgerView::open(&cfg)?;
    let key = crate::ledger::key_of(&event);
    let mut out = String::new();
    match &event {
        crate::model::Event::Alert(a) => {
            let f = &a.fields;
            let _ = writeln!(
                out,
                "alert {} ({:?}, policy {:?}, notifiers {:?})",
                f.id, f.state, f.policy.name, f.policy.notifiers
            );
        }
        crate::model::Event::Audit(_) => out.push_str("audit event\n"),
    }
    for d in &dests {
        let _ = write!(out, "\n{} ({}): ", d.name, d.kind);
        match d.decide(&event) {
            Err(why) => {
                let _ = writeln!(out, "not sent: {why}");
                continue;
            }
            Ok(()) => {
                let why = match &event {
                    crate::model::Event::Audit(_) => "audit = true".to_string(),
                    crate::model::Event::Alert(a)
                        if a.fields.policy.notifiers.iter().any(|n| n == &d.rule.id) =>
                    {
                        format!("policy.notifiers lists its id {:?}", d.rule.id)
                    }
                    _ => "all_alerts = true".to_string(),
                };
                let _ = writeln!(out, "sent ({why}; every filter passed)");
            }
        }
        let mut target = Target::default();
        if let (Some(a), crate::model::Event::Alert(_)) = (d.notifier.annotation(), &event) {
            let r = a.resolve(&event);
            let shown = match &r.target {
                Ok(t) if t.value.is_none() => a.default_shown.clone(),
                Ok(t) => t.shown.clone(),
                Err(why) => format!("refused, dead-lettered as target_not_allowed: {why}"),
            };
            let _ = writeln!(
                out,
                "  target: {shown} (annotation key {:?}, decided by the {})",
                a.key,
                r.step.as_str()
            );
            match r.target {
                Ok(t) => target = t,
                Err(_) => continue,
            }
        }
        let _ = writeln!(
            out,
            "  ledger: {}",
            ledger_verdict(&ledger, d, &event, &key).await
        );
        if render {
            let body = d
                .notifier
                .render(
                    &event,
                    &target,
                    &RenderContext {
                        now: chrono::Utc::now(),
                    },
                )
                .map_err(|e| anyhow::anyhow!("{}: cannot render: {e}", d.name))?;
            let mut text = String::from_utf8_lossy(&body).into_owned();
            for secret in d.notifier.payload_secrets() {
                if !secret.is_empty() {
                    text = text.replace(secret, "<redacted>");
                }
            }
            let _ = writeln!(out, "  payload:\n{text}");
        }
    }
    Ok(out)
}

/// Whether the ledger would let the delivery through, and why.
async fn ledger_verdict(
    ledger: &dlq::LedgerView,
    d: &Destination,
    event: &crate::model::Event,
    key: &str,
) -> String {
    use crate::ledger::Plan;
    if matches!(ledger, dlq::LedgerView::Off) {
        return "off (at-least-once: no notify-once check)".into();
    }
    let (entry, parked) = match ledger.lookup(&d.name, key).await {
        Ok(found) => found,
        Err(e) => return format!("unknown ({e:#})"),
    };
    let recorded = match entry {
        None => format!("no record of {key:?}"),
        Some(e) => format!(
            "{key:?} recorded {} at {}",
            e.state.as_str(),
            chrono::DateTime::from_timestamp_millis(e.delivered_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default()
        ),
    };
    let now = chrono::Utc::now().timestamp_millis();
    match crate::ledger::plan(event, entry, parked, d.policy.renotify_runtime_updates, now) {
        Plan::Deliver(_) => format!("would deliver ({recorded})"),
        Plan::Skip(why, _) => format!("would skip: {why} ({recorded})"),
        Plan::ParkBehind => {
            format!("would wait behind a parked delivery of the same key ({recorded})")
        }
    }
}

fn render(
    config: &std::path::Path,
    destination: &str,
    input: Option<PathBuf>,
    now: Option<String>,
) -> anyhow::Result<Vec<u8>> {
    let (cfg, dests) = load(config)?;
    let dest = find(&dests, destination)?;
    let value = read_input(input.as_deref())?;
    let now = match now {
        Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
            .map_err(|e| anyhow::anyhow!("--now: not RFC 3339: {e}"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let event = decode(&value, &cfg.kafka.decode_limits())
        .map_err(|e| anyhow::anyhow!("invalid message: {e}"))?;
    if let Err(why) = dest.decide(&event) {
        eprintln!("note: herald would not send this event to {destination}: {why}");
    }
    let target = match dest.notifier.annotation() {
        None => Target::default(),
        Some(a) => a.resolve(&event).target.map_err(|why| {
            anyhow::anyhow!(
                "not sent: the target is refused (dead-lettered as target_not_allowed): {why}"
            )
        })?,
    };
    dest.notifier
        .render(&event, &target, &RenderContext { now })
        .map_err(|e| anyhow::anyhow!("cannot render: {e}"))
}
