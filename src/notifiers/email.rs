//! Email over SMTP (central-compat §2.5): implicit TLS, STARTTLS with AUTH PLAIN or
//! LOGIN, cleartext, or an unauthenticated relay; the recipient from an
//! annotation or the default. The bytes are herald's formatter's, sent as a
//! raw envelope, so the headers are exactly as specified.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;

use super::target::{Annotation, TargetKind};
use super::{BuildContext, FailureReason, Notifier, RenderContext, SendError, SendMeta, Target};
use crate::config::{join, read_secret, Errors, Secret};
use crate::formats::{email, text};
use crate::model::Event;

#[derive(Deserialize)]
pub struct Settings {
    /// `host` or `host:port` (465 when absent, as Central).
    server: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    /// The From display name.
    #[serde(default)]
    from: String,
    /// The envelope sender and From address.
    sender: String,
    /// The recipient unless an annotation names one.
    #[serde(default)]
    default_target: String,
    #[serde(default)]
    annotation_key: String,
    /// Domains an annotation's recipient may be in (`example.com`,
    /// `*.example.com`); empty: any (Central's rule).
    #[serde(default)]
    allowed_targets: Vec<String>,
    /// `implicit` (SMTPS, Central's default), `starttls` or `none`.
    #[serde(default = "default_tls")]
    tls: String,
    /// `plain` or `login` (Central: LOGIN only with STARTTLS).
    #[serde(default = "default_auth")]
    auth_method: String,
    #[serde(default)]
    allow_unauthenticated: bool,
    #[serde(default)]
    skip_tls_verify: bool,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    /// The EHLO name (Central: `localhost`).
    #[serde(default = "default_helo")]
    helo_name: String,
}

fn default_tls() -> String {
    "implicit".into()
}
fn default_auth() -> String {
    "plain".into()
}
fn default_helo() -> String {
    "localhost".into()
}

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// Credentials go to a server without TLS (`tls = "none"`).
    auth_in_clear: bool,
    server: String,
    from: String,
    sender: String,
    sender_address: Address,
    default_target: String,
    annotation: Option<Annotation>,
    ui_endpoint: String,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Email")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl super::Settings for Settings {
    fn build(self, ctx: &BuildContext, path: &str, errs: &mut Errors) -> Option<Arc<dyn Notifier>> {
        let before = errs.list.len();
        let (host, port) = match self.server.trim().rsplit_once(':') {
            Some((h, p)) if !p.is_empty() => match p.parse::<u16>() {
                Ok(p) if p > 0 => (h.to_string(), p),
                _ => {
                    errs.push(&join(path, "server"), "port must be 1..65535");
                    (h.to_string(), 465)
                }
            },
            Some((h, _)) => (h.to_string(), 465),
            None => (self.server.trim().to_string(), 465),
        };
        if host.is_empty() {
            errs.push(&join(path, "server"), "is required (host or host:port)");
        }
        let sender_address = match self.sender.parse::<Address>() {
            Ok(a) => Some(a),
            Err(e) => {
                errs.push(&join(path, "sender"), format!("not an email address: {e}"));
                None
            }
        };
        let password = read_secret(
            &self.password,
            &self.password_file,
            &join(path, "password"),
            errs,
        );
        let credentials = match (
            self.allow_unauthenticated,
            self.username.is_empty(),
            password,
        ) {
            (true, _, _) => None,
            (false, false, Some(p)) => Some(Credentials::new(
                self.username.clone(),
                p.expose().to_string(),
            )),
            (false, true, _) => {
                errs.push(
                    &join(path, "username"),
                    "is required unless allow_unauthenticated = true",
                );
                None
            }
            (false, false, None) => {
                errs.push(
                    &join(path, "password"),
                    "is required unless allow_unauthenticated = true",
                );
                None
            }
        };
        let mechanism = match self.auth_method.as_str() {
            "plain" => Mechanism::Plain,
            "login" => Mechanism::Login,
            _ => {
                errs.push(&join(path, "auth_method"), "must be \"plain\" or \"login\"");
                Mechanism::Plain
            }
        };
        let mut params = TlsParameters::builder(host.clone())
            .dangerous_accept_invalid_certs(self.skip_tls_verify);
        if let Some(ca) = &self.ca_file {
            match std::fs::read(ca)
                .map_err(|e| e.to_string())
                .and_then(|pem| Certificate::from_pem(&pem).map_err(|e| e.to_string()))
            {
                Ok(c) => params = params.add_root_certificate(c),
                Err(e) => errs.push(&join(path, "ca_file"), format!("{}: {e}", ca.display())),
            }
        }
        let params = match params.build() {
            Ok(p) => Some(p),
            Err(e) => {
                errs.push(path, format!("TLS setup failed: {e}"));
                None
            }
        };
        let tls = match (self.tls.as_str(), params) {
            ("implicit", Some(p)) => Tls::Wrapper(p),
            ("starttls", Some(p)) => Tls::Required(p),
            ("none", _) => Tls::None,
            (other, _) => {
                if !matches!(other, "implicit" | "starttls") {
                    errs.push(
                        &join(path, "tls"),
                        "must be \"implicit\", \"starttls\" or \"none\"",
                    );
                }
                Tls::None
            }
        };
        if self.default_target.is_empty() && self.annotation_key.is_empty() {
            errs.push(
                &join(path, "default_target"),
                "is required (the default recipient)",
            );
        }
        if errs.list.len() > before {
            return None;
        }
        let auth_in_clear = credentials.is_some() && matches!(tls, Tls::None);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .tls(tls)
            .hello_name(ClientId::Domain(self.helo_name.clone()))
            .timeout(Some(ctx.timeout.min(Duration::from_secs(60))));
        if let Some(c) = credentials {
            builder = builder.credentials(c).authentication(vec![mechanism]);
        }
        Some(Arc::new(Email {
            transport: builder.build(),
            auth_in_clear,
            server: format!("{host}:{port}"),
            from: email::from_header(&self.from, &self.sender),
            sender: self.sender,
            sender_address: sender_address?,
            annotation: (!self.annotation_key.is_empty()).then(|| Annotation {
                key: self.annotation_key,
                kind: TargetKind::Email {
                    allowed: self.allowed_targets,
                },
                default_shown: self.default_target.clone(),
                metadata: ctx.metadata.clone(),
            }),
            default_target: self.default_target,
            ui_endpoint: ctx.ui_endpoint.clone(),
        }))
    }
}

impl Email {
    /// The recipient: the annotation's value, else the default (Central's rule).
    fn recipient<'a>(&'a self, target: &'a Target) -> &'a str {
        target.value.as_deref().unwrap_or(&self.default_target)
    }

    async fn deliver(&self, to: &str, bytes: &[u8]) -> Result<(), SendError> {
        let to_address: Address = to.parse().map_err(|e| {
            SendError::permanent(
                FailureReason::ClientError,
                format!("recipient {to:?} is not an email address: {e}"),
            )
        })?;
        let envelope = Envelope::new(Some(self.sender_address.clone()), vec![to_address])
            .map_err(|e| SendError::permanent(FailureReason::ClientError, e.to_string()))?;
        // lettre always ends DATA with CRLF "." CRLF: hand it the message
        // without its final line break, so the server stores it as written.
        let bytes = bytes.strip_suffix(b"\r\n").unwrap_or(bytes);
        self.transport
            .send_raw(&envelope, bytes)
            .await
            .map(|_| ())
            .map_err(|e| {
                let message = format!("SMTP {}: {e}", self.server);
                match e.status().map(|c| c.to_string()) {
                    Some(code)
                        if e.is_permanent()
                            && (code == "535" || code == "530" || code == "534") =>
                    {
                        SendError::permanent(FailureReason::AuthError, message)
                    }
                    _ if e.is_permanent() => {
                        SendError::permanent(FailureReason::ClientError, message)
                    }
                    _ if e.is_transient() => {
                        SendError::retryable(FailureReason::ServerError, message)
                    }
                    _ if e.is_timeout() => SendError::retryable(FailureReason::Timeout, message),
                    _ => SendError::retryable(FailureReason::Connect, message),
                }
            })
    }
}

impl Notifier for Email {
    fn cleartext_credentials(&self) -> Option<String> {
        self.auth_in_clear.then(|| {
            format!(
                "SMTP AUTH to {} without TLS (tls = \"none\"): the password is sent in clear",
                self.server
            )
        })
    }

    fn annotation(&self) -> Option<&Annotation> {
        self.annotation.as_ref()
    }

    fn render(
        &self,
        event: &Event,
        target: &Target,
        ctx: &RenderContext,
    ) -> Result<Vec<u8>, String> {
        let Event::Alert(a) = event else {
            return Err("email takes no audit messages".into());
        };
        let f = &a.fields;
        let body = text::format_alert(f, &self.ui_endpoint, text::Table::Email);
        Ok(email::message(&email::Message {
            from: &self.from,
            to: self.recipient(target),
            date: ctx.now,
            subject: &text::summary(f),
            message_id: &email::message_id(&f.id, f.state.as_str(), &self.sender),
            body: &body,
        }))
    }

    fn send<'a>(
        &'a self,
        _event: &'a Event,
        target: &'a Target,
        payload: &'a [u8],
        _meta: &'a SendMeta,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.deliver(self.recipient(target), payload))
    }

    fn test(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async move {
            let now = chrono::Utc::now();
            let bytes = email::message(&email::Message {
                from: &self.from,
                to: &self.default_target,
                date: now,
                subject: "StackRox Test Email",
                message_id: &email::message_id(
                    &format!("test-{}", now.timestamp_millis()),
                    "test",
                    &self.sender,
                ),
                body: "This is a test email created to test integration with StackRox.\r\n",
            });
            self.deliver(&self.default_target, &bytes).await?;
            Ok(format!(
                "{} accepted the test email for {}",
                self.server, self.default_target
            ))
        })
    }
}
