//! Logs: text or JSON on stderr; the level from `RUST_LOG` or the config.
//!
//! Log lines carry values that came from input (alert ids, decode reasons
//! naming a message's keys, a receiver's error text): every line goes
//! through [`Escaping`], so such a value cannot end a line and forge the
//! next one.

use std::io::{IsTerminal, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Logs to stderr at `level` (unless `RUST_LOG` says otherwise), as JSON
/// lines or text.
pub fn init(level: &str, json: bool) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(level))
        // The AWS SDK traces whole requests, bodies with tokens included
        // (AssumeRoleWithWebIdentity carries the web identity token).
        .add_directive(quiet("aws_smithy_runtime"))
        .add_directive(quiet("aws_smithy_runtime_api"))
        .add_directive(quiet("aws_config"))
        .add_directive(quiet("aws_sdk_sts"))
        .add_directive(quiet("oauth2"));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(Escaping {
            inner: std::io::stderr,
            ansi,
        });
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

fn quiet(target: &str) -> tracing_subscriber::filter::Directive {
    format!("{target}=info").parse().expect("a valid directive")
}

/// Wraps a writer of whole log lines (tracing writes each event with one
/// `write_all`): line breaks inside a line become `\n` / `\r`, and other
/// control characters `\u{..}` (escape sequences too, unless colours are on).
#[derive(Clone)]
pub struct Escaping<M> {
    pub inner: M,
    pub ansi: bool,
}

pub struct EscapingWriter<W> {
    inner: W,
    ansi: bool,
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Escaping<M> {
    type Writer = EscapingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter {
            inner: self.inner.make_writer(),
            ansi: self.ansi,
        }
    }
}

/// `line` with every control character but the final line break (and tab)
/// spelled out; `None` when there is none (the usual case: no copy).
fn escape_line(line: &[u8], ansi: bool) -> Option<Vec<u8>> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let unsafe_byte = |b: u8| b < 0x20 && b != b'\t' && !(ansi && b == 0x1b) || b == 0x7f;
    if !body.iter().any(|&b| unsafe_byte(b)) {
        return None;
    }
    let mut out = Vec::with_capacity(line.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if unsafe_byte(b) => out.extend_from_slice(format!("\\u{{{b:02x}}}").as_bytes()),
            b => out.push(b),
        }
    }
    if body.len() < line.len() {
        out.push(b'\n');
    }
    Some(out)
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match escape_line(buf, self.ansi) {
            None => self.inner.write_all(buf)?,
            Some(escaped) => self.inner.write_all(&escaped)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_value_from_input_cannot_forge_a_log_line() {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(Escaping {
                inner: move || out.clone(),
                ansi: false,
            })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let id = "a1\n2026-12-07T00:00:00Z  INFO herald: forged\r\u{1b}[2J";
            tracing::warn!(alert = %id, "invalid message: {}", id);
            tracing::info!("plain");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            " WARN herald::telemetry::logs::tests: invalid message: a1\\n2026-12-07T00:00:00Z  INFO herald: forged\\r\\x1b[2J alert=a1\\n2026-12-07T00:00:00Z  INFO herald: forged\\r\\u{1b}[2J\n INFO herald::telemetry::logs::tests: plain\n"
        );
    }
}
