//! TLS client settings for stream destinations (syslog): the CA bundle (or
//! the Mozilla roots), an optional client certificate for mTLS, and
//! skip-verify, which a user must turn on explicitly.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{join, Errors};

pub struct TlsFiles<'a> {
    pub ca_file: &'a Option<PathBuf>,
    pub cert_file: &'a Option<PathBuf>,
    pub key_file: &'a Option<PathBuf>,
    pub skip_verify: bool,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config from PEM files (herald's own HTTPS listener, `[ingest]`),
/// reporting unreadable or invalid files by field.
pub fn server_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    path: &str,
    errs: &mut Errors,
) -> Option<Arc<rustls::ServerConfig>> {
    let chain: Result<Vec<CertificateDer<'static>>, _> =
        CertificateDer::pem_file_iter(cert).and_then(|it| it.collect());
    let chain = match chain {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => {
            errs.push(
                &join(path, "tls_cert_file"),
                format!("{} holds no PEM certificate", cert.display()),
            );
            return None;
        }
        Err(e) => {
            errs.push(
                &join(path, "tls_cert_file"),
                format!("{}: {e}", cert.display()),
            );
            return None;
        }
    };
    let key_der = match PrivateKeyDer::from_pem_file(key) {
        Ok(k) => k,
        Err(e) => {
            errs.push(
                &join(path, "tls_key_file"),
                format!("{}: {e}", key.display()),
            );
            return None;
        }
    };
    match rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key_der))
    {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            errs.push(
                &join(path, "tls_key_file"),
                format!("does not match the certificate: {e}"),
            );
            None
        }
    }
}

/// Builds the client config, reporting unreadable or invalid files by field.
pub fn client_config(f: TlsFiles<'_>, path: &str, errs: &mut Errors) -> Option<Arc<ClientConfig>> {
    let before = errs.list.len();
    let mut roots = RootCertStore::empty();
    match f.ca_file {
        Some(ca) => match CertificateDer::pem_file_iter(ca) {
            Ok(certs) => {
                let mut n = 0;
                for c in certs {
                    match c
                        .map_err(|e| e.to_string())
                        .and_then(|c| roots.add(c).map_err(|e| e.to_string()))
                    {
                        Ok(()) => n += 1,
                        Err(e) => {
                            errs.push(&join(path, "ca_file"), format!("{}: {e}", ca.display()))
                        }
                    }
                }
                if n == 0 {
                    errs.push(
                        &join(path, "ca_file"),
                        format!("{} holds no PEM certificate", ca.display()),
                    );
                }
            }
            Err(e) => errs.push(
                &join(path, "ca_file"),
                format!("cannot read {}: {e}", ca.display()),
            ),
        },
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = match ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b,
        Err(e) => {
            errs.push(path, format!("TLS setup failed: {e}"));
            return None;
        }
    };
    let builder = if f.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        builder.with_root_certificates(roots)
    };
    let config = match (f.cert_file, f.key_file) {
        (Some(cert), Some(key)) => {
            let chain: Result<Vec<CertificateDer<'static>>, _> =
                match CertificateDer::pem_file_iter(cert) {
                    Ok(it) => it.collect(),
                    Err(e) => {
                        errs.push(
                            &join(path, "cert_file"),
                            format!("cannot read {}: {e}", cert.display()),
                        );
                        return None;
                    }
                };
            let chain = match chain {
                Ok(c) if !c.is_empty() => c,
                _ => {
                    errs.push(
                        &join(path, "cert_file"),
                        format!("{} holds no PEM certificate", cert.display()),
                    );
                    return None;
                }
            };
            let key = match PrivateKeyDer::from_pem_file(key) {
                Ok(k) => k,
                Err(e) => {
                    errs.push(
                        &join(path, "key_file"),
                        format!("{}: no PEM private key ({e})", key.display()),
                    );
                    return None;
                }
            };
            match builder.with_client_auth_cert(chain, key) {
                Ok(c) => c,
                Err(e) => {
                    errs.push(
                        &join(path, "key_file"),
                        format!("does not match cert_file: {e}"),
                    );
                    return None;
                }
            }
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            errs.push(
                &join(path, "key_file"),
                "cert_file and key_file must be given together",
            );
            return None;
        }
    };
    if errs.list.len() > before {
        return None;
    }
    Some(Arc::new(config))
}

/// Accepts any server certificate (`skip_tls_verify = true`): signatures are
/// still checked, the chain and name are not.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
