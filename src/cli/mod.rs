//! The `herald` command line.

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
    /// Print the version.
    Version,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("herald {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: valid ({} destination{})",
                    config.display(),
                    c.destinations.len(),
                    if c.destinations.len() == 1 { "" } else { "s" }
                );
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
