//! Syslog with CEF payloads (central-compat §2.1): one persistent TCP or TLS connection
//! per destination (or UDP, opt-in), RFC 6587 octet counting, and a clean TLS
//! shutdown (close_notify) so the receiver keeps every frame.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use indexmap::IndexMap;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;

use super::{BuildContext, Notifier, RenderContext, SendMeta, Target};
use super::{FailureReason, SendError};
use crate::config::{join, Errors};
use crate::formats::cef::{self, Framing, HeaderOrder};
use crate::model::Event;
use crate::tls::{self, TlsFiles};

#[derive(Deserialize)]
pub struct Settings {
    host: String,
    #[serde(default = "default_port")]
    port: i64,
    #[serde(default = "default_facility")]
    facility: String,
    #[serde(default = "default_format")]
    format: String,
    #[serde(default)]
    extra_fields: IndexMap<String, String>,
    #[serde(default)]
    tls: bool,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    skip_tls_verify: bool,
    /// HOSTNAME in the header; Central writes the literal `central`.
    #[serde(default = "default_hostname")]
    hostname: String,
    /// PROCID; herald's pid unless set (Central's is its own pid).
    #[serde(default)]
    procid: Option<String>,
    /// The CEF device version; herald's version unless set.
    #[serde(default)]
    device_version: Option<String>,
    #[serde(default)]
    max_message_size: usize,
    /// `tcp` (Central's only transport) or `udp`.
    #[serde(default = "default_transport")]
    transport: String,
    /// `octet-counting` (Central's) or `newline`.
    #[serde(default = "default_framing")]
    framing: String,
    /// CEF escaping per the CEF specification; Central escapes nothing.
    #[serde(default)]
    cef_escaping: bool,
    /// Shrink the embedded JSON so a record fits this many bytes (0: off).
    #[serde(default)]
    max_record_size: usize,
    /// Recent frames kept for writing again after a connection reset.
    #[serde(default = "default_resend_window")]
    resend_window_bytes: usize,
}

fn default_resend_window() -> usize {
    4 << 20
}

fn default_port() -> i64 {
    514
}
fn default_facility() -> String {
    "local0".into()
}
fn default_format() -> String {
    "cef".into()
}
fn default_hostname() -> String {
    "central".into()
}
fn default_transport() -> String {
    "tcp".into()
}
fn default_framing() -> String {
    "octet-counting".into()
}

enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(b).await,
            Stream::Tls(s) => s.write_all(b).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush().await,
            Stream::Tls(s) => s.flush().await,
        }
    }

    /// Sends close_notify (TLS) and FIN, then reads until the receiver
    /// closes too: closing with unread bytes (TLS session tickets) would make
    /// the kernel send a reset, and the receiver drop frames it had not read.
    async fn shutdown(&mut self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
        };
        let drain = async {
            let mut buf = [0u8; 4096];
            loop {
                let n = match self {
                    Stream::Tcp(s) => s.read(&mut buf).await,
                    Stream::Tls(s) => s.read(&mut buf).await,
                };
                if !matches!(n, Ok(n) if n > 0) {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    }

    /// What the receiver did to the connection, without waiting. Receivers
    /// never send data, so anything readable is an end (or TLS housekeeping,
    /// which rustls consumes).
    fn peer_state(&mut self) -> PeerState {
        let mut buf = [0u8; 256];
        let read = match self {
            Stream::Tcp(s) => poll_once(s, &mut buf),
            Stream::Tls(s) => poll_once(s.as_mut(), &mut buf),
        };
        match read {
            None | Some(Ok(1..)) => PeerState::Open,
            Some(Ok(0)) => PeerState::Closed,
            Some(Err(_)) => PeerState::Reset,
        }
    }
}

enum PeerState {
    Open,
    /// FIN: the receiver read everything before closing.
    Closed,
    /// Reset: frames still unread may be lost.
    Reset,
}

fn poll_once<S: AsyncRead + Unpin>(s: &mut S, buf: &mut [u8]) -> Option<std::io::Result<usize>> {
    s.read(buf).now_or_never()
}

/// The connection and what it recently carried. TCP syslog has no
/// acknowledgements: a receiver that resets its connection (it stopped with
/// frames still unread) loses them silently, and one that stops cleanly may
/// still drop the last frame it read. So the last frames written are kept,
/// bounded in bytes, and written again on the next connection: all of them
/// after a reset, the last second's after a clean close. A SIEM may see a
/// duplicate (same devicePayloadId), never a gap.
#[derive(Default)]
struct Link {
    stream: Option<Stream>,
    recent: std::collections::VecDeque<(std::time::Instant, Vec<u8>)>,
    recent_bytes: usize,
    /// Frames to write first on the next connection.
    resend: Vec<Vec<u8>>,
    /// Set while frames are being written: still set at the next write, the
    /// last one was cancelled (its attempt timed out) part-way through a
    /// frame, and the connection is unusable.
    writing: bool,
}

/// After a clean close, frames written this long before the last write are
/// taken as processed by the receiver.
const CLEAN_CLOSE_RESEND: Duration = Duration::from_secs(1);

impl Link {
    fn remember(&mut self, frames: &[Vec<u8>], limit: usize) {
        let now = std::time::Instant::now();
        for f in frames {
            self.recent_bytes += f.len();
            self.recent.push_back((now, f.clone()));
        }
        while self.recent_bytes > limit {
            match self.recent.pop_front() {
                Some((_, f)) => self.recent_bytes -= f.len(),
                None => break,
            }
        }
    }

    /// The connection ended: write again what may not have been kept.
    fn ended(&mut self, reset: bool) {
        self.stream = None;
        let last = self.recent.back().map(|(t, _)| *t);
        let keep_after = match (reset, last) {
            (false, Some(last)) => last.checked_sub(CLEAN_CLOSE_RESEND),
            _ => None,
        };
        let recent = std::mem::take(&mut self.recent);
        self.recent_bytes = 0;
        self.resend.extend(
            recent
                .into_iter()
                .filter(|(t, _)| reset || keep_after.is_none_or(|k| *t >= k))
                .map(|(_, f)| f),
        );
    }
}

enum Transport {
    Stream {
        tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
        link: Mutex<Link>,
        resend_window: usize,
    },
    Udp(Mutex<Option<UdpSocket>>),
}

pub struct Syslog {
    addr: String,
    metadata: Arc<crate::routing::metadata::Metadata>,
    settings: cef::Settings,
    transport: Transport,
    connect_timeout: Duration,
}

impl fmt::Debug for Syslog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Syslog")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl super::Settings for Settings {
    fn build(self, ctx: &BuildContext, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
        let before = errs.list.len();
        let host = self.host.trim().to_string();
        if host.is_empty() || host.contains(char::is_whitespace) {
            errs.push(
                &join(path, "host"),
                "must be a host name or address without spaces",
            );
        }
        if !(1..=65535).contains(&self.port) {
            errs.push(&join(path, "port"), "must be 1..65535");
        }
        let facility = match self
            .facility
            .to_ascii_lowercase()
            .strip_prefix("local")
            .and_then(|n| n.parse::<u8>().ok())
        {
            Some(n) if n <= 7 => n,
            _ => {
                errs.push(&join(path, "facility"), "must be local0 … local7");
                0
            }
        };
        let order = match self.format.as_str() {
            "cef" => HeaderOrder::Cef,
            "legacy" => HeaderOrder::Legacy,
            _ => {
                errs.push(&join(path, "format"), "must be \"cef\" or \"legacy\"");
                HeaderOrder::Cef
            }
        };
        let udp = match self.transport.as_str() {
            "tcp" => false,
            "udp" => true,
            _ => {
                errs.push(&join(path, "transport"), "must be \"tcp\" or \"udp\"");
                false
            }
        };
        let framing = match (udp, self.framing.as_str()) {
            (true, _) => Framing::Datagram,
            (false, "octet-counting") => Framing::OctetCounting,
            (false, "newline") => Framing::Newline,
            _ => {
                errs.push(
                    &join(path, "framing"),
                    "must be \"octet-counting\" or \"newline\"",
                );
                Framing::OctetCounting
            }
        };
        if udp && self.tls {
            errs.push(&join(path, "tls"), "TLS needs transport = \"tcp\"");
        }
        for (k, v) in &self.extra_fields {
            if k.is_empty() || v.is_empty() {
                errs.push(
                    &join(path, "extra_fields"),
                    "all extra fields must have both a key and a value",
                );
                break;
            }
        }
        let tls = if self.tls {
            let files = TlsFiles {
                ca_file: &self.ca_file,
                cert_file: &self.cert_file,
                key_file: &self.key_file,
                skip_verify: self.skip_tls_verify,
            };
            let config = tls::client_config(files, path, errs);
            let name =
                rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string());
            match (config, name) {
                (Some(c), Ok(n)) => Some((TlsConnector::from(c), n)),
                (_, Err(_)) => {
                    errs.push(&join(path, "host"), "not a valid TLS server name");
                    None
                }
                _ => None,
            }
        } else {
            if self.ca_file.is_some() || self.cert_file.is_some() || self.skip_tls_verify {
                errs.push(
                    &join(path, "tls"),
                    "ca_file, cert_file and skip_tls_verify need tls = true",
                );
            }
            None
        };
        if errs.list.len() > before {
            return None;
        }
        let host_port = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        };
        let transport = if udp {
            Transport::Udp(Mutex::new(None))
        } else {
            Transport::Stream {
                tls,
                link: Mutex::new(Link::default()),
                resend_window: self.resend_window_bytes,
            }
        };
        Some(Arc::new(Syslog {
            addr: host_port,
            metadata: ctx.metadata.clone(),
            settings: cef::Settings {
                facility,
                hostname: self.hostname,
                procid: self
                    .procid
                    .unwrap_or_else(|| std::process::id().to_string()),
                device_version: self
                    .device_version
                    .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
                order,
                extra_fields: self.extra_fields.into_iter().collect(),
                escape: self.cef_escaping,
                max_message_size: self.max_message_size,
                framing,
                max_record_size: self.max_record_size,
            },
            transport,
            connect_timeout: ctx.timeout,
        }))
    }
}

impl Syslog {
    fn connect_error(&self, what: &str, e: impl fmt::Display) -> SendError {
        SendError::retryable(
            FailureReason::Connect,
            format!("syslog {}: {what}: {e}", self.addr),
        )
    }

    async fn connect(&self) -> Result<Stream, SendError> {
        let Transport::Stream { tls, .. } = &self.transport else {
            unreachable!()
        };
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| self.connect_error("connect", "timed out"))?
            .map_err(|e| self.connect_error("connect", e))?;
        let _ = tcp.set_nodelay(true);
        match tls {
            None => Ok(Stream::Tcp(tcp)),
            Some((connector, name)) => {
                let s = tokio::time::timeout(
                    self.connect_timeout,
                    connector.connect(name.clone(), tcp),
                )
                .await
                .map_err(|_| self.connect_error("TLS handshake", "timed out"))?
                .map_err(|e| self.connect_error("TLS handshake", e))?;
                Ok(Stream::Tls(Box::new(s)))
            }
        }
    }

    async fn write(&self, frames: &[Vec<u8>]) -> Result<(), SendError> {
        match &self.transport {
            Transport::Udp(sock) => {
                let mut sock = sock.lock().await;
                if sock.is_none() {
                    let s = UdpSocket::bind(if self.addr.starts_with('[') {
                        "[::]:0"
                    } else {
                        "0.0.0.0:0"
                    })
                    .await
                    .map_err(|e| self.connect_error("bind", e))?;
                    s.connect(&self.addr)
                        .await
                        .map_err(|e| self.connect_error("connect", e))?;
                    *sock = Some(s);
                }
                let s = sock.as_ref().expect("set above");
                for f in frames {
                    if let Err(e) = s.send(f).await {
                        *sock = None;
                        return Err(self.connect_error("send", e));
                    }
                }
                Ok(())
            }
            Transport::Stream {
                link,
                resend_window,
                ..
            } => {
                let mut link = link.lock().await;
                match link.stream.as_mut().map(Stream::peer_state) {
                    Some(PeerState::Closed) => {
                        link.ended(false);
                        tracing::info!(
                            addr = %self.addr,
                            frames = link.resend.len(),
                            "syslog receiver closed the connection; reconnecting and writing its last frames again"
                        );
                    }
                    Some(PeerState::Reset) => {
                        link.ended(true);
                        tracing::warn!(
                            addr = %self.addr,
                            frames = link.resend.len(),
                            "syslog receiver reset the connection; writing the recent frames again"
                        );
                    }
                    _ => {}
                }
                if std::mem::take(&mut link.writing) && link.stream.is_some() {
                    // Half a frame may be on the wire: a receiver would read
                    // the next frame as its rest. Start a new connection and
                    // write the recent frames again.
                    link.ended(true);
                    tracing::warn!(
                        addr = %self.addr,
                        "a write to the syslog receiver was cut off mid-frame; reconnecting"
                    );
                }
                if link.stream.is_none() {
                    link.stream = Some(self.connect().await?);
                }
                link.writing = true;
                let resend = std::mem::take(&mut link.resend);
                let s = link.stream.as_mut().expect("set above");
                let mut result = Ok(());
                for f in resend.iter().chain(frames) {
                    result = s.write_all(f).await;
                    if result.is_err() {
                        break;
                    }
                }
                if result.is_ok() {
                    result = s.flush().await;
                }
                link.writing = false;
                match result {
                    Ok(()) => {
                        link.remember(&resend, *resend_window);
                        link.remember(frames, *resend_window);
                        Ok(())
                    }
                    Err(e) => {
                        // This delivery is retried by the delivery layer; what
                        // went before it may be lost with the connection.
                        link.resend = resend;
                        link.ended(true);
                        tracing::warn!(
                            addr = %self.addr,
                            error = %e,
                            "syslog connection broke while writing; reconnecting and writing the recent frames again"
                        );
                        Err(self.connect_error("write", e))
                    }
                }
            }
        }
    }
}

impl Syslog {
    fn record(&self, event: &Event) -> Result<String, String> {
        match event {
            Event::Alert(a) => {
                let f = &a.fields;
                let cluster_id = f.deployment.as_ref().map_or_else(
                    || {
                        f.resource
                            .as_ref()
                            .map_or(f.cluster_id.as_str(), |r| r.cluster_id.as_str())
                    },
                    |d| d.cluster_id.as_str(),
                );
                let cluster_id = if cluster_id.is_empty() {
                    f.cluster_id.as_str()
                } else {
                    cluster_id
                };
                let snapshot = self.metadata.snapshot();
                let labels =
                    self.metadata
                        .labels(&snapshot, cluster_id, f.cluster_name(), f.namespace());
                cef::alert_record(a, &self.settings, labels)
            }
            Event::Audit(a) => cef::audit_record(a, &self.settings),
        }
    }
}

impl Notifier for Syslog {
    fn render(
        &self,
        event: &Event,
        _target: &Target,
        _ctx: &RenderContext,
    ) -> Result<Vec<u8>, String> {
        Ok(cef::frames(&self.record(event)?, &self.settings).concat())
    }

    fn send<'a>(
        &'a self,
        event: &'a Event,
        _target: &'a Target,
        payload: &'a [u8],
        _meta: &'a SendMeta,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            match &self.transport {
                // On a stream, the rendered frames back to back are the wire bytes.
                Transport::Stream { .. } => self.write(&[payload.to_vec()]).await,
                // Datagrams need the frame boundaries: build them again.
                Transport::Udp(_) => {
                    let record = self
                        .record(event)
                        .map_err(|e| SendError::permanent(FailureReason::Render, e))?;
                    self.write(&cef::frames(&record, &self.settings)).await
                }
            }
        })
    }

    fn test(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async move {
            let record = cef::test_record(&self.settings, chrono::Utc::now());
            self.write(&cef::frames(&record, &self.settings)).await?;
            Ok(format!("test message written to {}", self.addr))
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Transport::Stream { link, .. } = &self.transport {
                if let Some(mut s) = link.lock().await.stream.take() {
                    s.shutdown().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// An attempt cancelled part-way through a frame (its timeout fired
    /// while the receiver read nothing) leaves that connection unusable: the
    /// next write goes to a new connection, which gets whole frames only.
    #[tokio::test]
    async fn a_write_cut_off_mid_frame_is_not_continued_on_the_same_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let notifier = crate::notifiers::parse_one(&format!(
            "[[destinations]]\nname = \"s\"\nid = \"n1\"\ntype = \"syslog\"\nhost = \"127.0.0.1\"\nport = {port}\n"
        ))
        .unwrap();
        let event = crate::model::decode(
            br#"{"id":"a","policy":{}}"#,
            &crate::model::Limits::default(),
        )
        .unwrap();
        let meta = SendMeta {
            idempotency_key: "a".into(),
        };
        let to = super::super::Target::default();
        // A frame far larger than the socket buffers, to a receiver that
        // does not read: the write blocks mid-frame and is cut off.
        let big = vec![b'x'; 64 << 20];
        let (mut first, _) = tokio::join!(async { listener.accept().await.unwrap().0 }, async {
            let cut = tokio::time::timeout(
                Duration::from_millis(300),
                notifier.send(&event, &to, &big, &meta),
            )
            .await;
            assert!(cut.is_err(), "the write was not cut off");
        });
        let small = b"12 a small frame".to_vec();
        let (second, sent) = tokio::join!(
            async { listener.accept().await.unwrap().0 },
            notifier.send(&event, &to, &small, &meta)
        );
        sent.unwrap();
        notifier.close().await;
        let mut got = Vec::new();
        let mut second = second;
        second.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, small, "the new connection carries whole frames only");
        // The first connection got only part of the big frame, and nothing more.
        let mut old = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), first.read_to_end(&mut old)).await;
        assert!(old.len() < big.len() && old.iter().all(|b| *b == b'x'));
    }
}
