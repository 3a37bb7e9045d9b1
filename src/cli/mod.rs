//! The `herald` command line.

pub mod dlq;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::model::decode;
use crate::notifiers::RenderContext;
use crate::{app, routing, telemetry};

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
        Command::CheckConfig { config, online } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: valid ({} destination{})",
                    config.display(),
                    c.destinations.len(),
                    if c.destinations.len() == 1 { "" } else { "s" }
                );
                if online {
                    return report(block_on(async move {
                        let mut failed = 0;
                        for d in &c.destinations {
                            match d.notifier.preflight().await {
                                Ok(what) => println!("{}: ok: {what}", d.common.name),
                                Err(e) => {
                                    failed += 1;
                                    println!("{}: failed: {e}", d.common.name);
                                }
                            }
                        }
                        anyhow::ensure!(
                            failed == 0,
                            "{failed} destination(s) failed their start-up checks"
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
        Command::Test {
            config,
            destination,
        } => report(block_on(async move {
            let cfg = load(&config)?;
            let dest = cfg
                .destination(&destination)
                .ok_or_else(|| anyhow::anyhow!("no destination named {destination:?}"))?;
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
            let cfg = load(&config)?;
            for p in dlq::parked(&cfg).await? {
                println!(
                    "{}\t{}\t{}/{}@{}\tattempts={}\tnext={}\t{}",
                    p.destination,
                    p.key,
                    p.topic,
                    p.partition,
                    p.offset,
                    p.attempts,
                    chrono::DateTime::from_timestamp_millis(p.next_attempt_ms)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        .unwrap_or_default(),
                    p.last_error
                );
            }
            Ok(())
        })),
        Command::Run { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(errs) => {
                    eprintln!("{}: invalid configuration", config.display());
                    for e in &errs.list {
                        eprintln!("{e}");
                    }
                    return ExitCode::FAILURE;
                }
            };
            telemetry::init(&cfg.log);
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(app::run(cfg));
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

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|errs| anyhow::anyhow!("invalid configuration:\n{errs}"))
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
            let cfg = load(&config)?;
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
        } => {
            let cfg = std::sync::Arc::new(load(&config)?);
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
            let n = dlq::replay(&cfg, records, &destination, since).await?;
            println!("replayed {n} delivery failure(s) to {destination}");
            Ok(())
        }
    }
}

fn render(
    config: &std::path::Path,
    destination: &str,
    input: Option<PathBuf>,
    now: Option<String>,
) -> anyhow::Result<Vec<u8>> {
    let cfg =
        Config::load(config).map_err(|errs| anyhow::anyhow!("invalid configuration:\n{errs}"))?;
    let dest = cfg.destination(destination).ok_or_else(|| {
        let names: Vec<&str> = cfg
            .destinations
            .iter()
            .map(|d| d.common.name.as_str())
            .collect();
        anyhow::anyhow!(
            "no destination named {destination:?} (configured: {})",
            names.join(", ")
        )
    })?;
    let mut value = Vec::new();
    match input.as_deref() {
        None => std::io::stdin().read_to_end(&mut value)?,
        Some(p) if p.as_os_str() == "-" => std::io::stdin().read_to_end(&mut value)?,
        Some(p) => {
            value = std::fs::read(p)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
            value.len()
        }
    };
    let now = match now {
        Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
            .map_err(|e| anyhow::anyhow!("--now: not RFC 3339: {e}"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let event = decode(&value, cfg.kafka.max_message_bytes)
        .map_err(|e| anyhow::anyhow!("invalid message: {e}"))?;
    if let Err(why) = routing::decide(&dest.common, dest.notifier.can_resolve(), &event) {
        eprintln!("note: herald would not send this event to {destination}: {why}");
    }
    dest.notifier
        .render(&event, &RenderContext { now })
        .map_err(|e| anyhow::anyhow!("cannot render: {e}"))
}
