//! Connecting to PostgreSQL, with TLS as libpq's `sslmode` says. Shared by both binaries.
//!
//! `sslmode` and `sslrootcert` are read from the connection string (URL query or `key=value`
//! form) and the rest goes to `tokio-postgres`, which knows only disable/prefer/require:
//!
//! | sslmode | TLS | server certificate |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `prefer` (default) | if the server offers it | not checked (libpq's meaning) |
//! | `require` | always | not checked (libpq's meaning) |
//! | `verify-ca` | always | chain checked against `sslrootcert` (or the system roots) |
//! | `verify-full` | always | chain and host name checked |
//!
//! Invariants: a mode that verifies never falls back to an unverified or clear connection; the
//! root certificates come only from `sslrootcert` when it is given; errors never carry the
//! password (they name the URL redacted).

use crate::config::redact_url;
use crate::error::Error;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;
use tokio_postgres::config::SslMode as PgSslMode;
pub use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// A connection string taken apart: what `tokio-postgres` gets, and the TLS it needs.
pub struct Connection {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub mode: SslMode,
}

/// Parses a connection string and builds its TLS connector.
pub fn connection(url: &str) -> Result<Connection, Error> {
    let bad = |reason: String| Error::Config {
        setting: "SLUICE_DATABASE_URL",
        reason: format!("{reason} (in {})", redact_url(url)),
    };
    let (rest, sslmode, rootcert) = split_tls_params(url);
    let mode = match sslmode.as_deref() {
        None => SslMode::Prefer,
        Some(m) => SslMode::parse(m).ok_or_else(|| bad(format!("unknown sslmode {m:?}")))?,
    };
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e: tokio_postgres::Error| bad(e.to_string()))?;
    config.ssl_mode(match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        _ => PgSslMode::Require,
    });
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("tls: {e}")))?;
    let tls = if mode.verifies() {
        let mut roots = RootCertStore::empty();
        match &rootcert {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| bad(format!("cannot read sslrootcert {path}: {e}")))?;
                for cert in certs {
                    let cert = cert
                        .map_err(|e| bad(format!("bad certificate in sslrootcert {path}: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| bad(format!("bad certificate in sslrootcert {path}: {e}")))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        if roots.is_empty() {
            return Err(bad(
                "no root certificate to verify the server with".to_owned()
            ));
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| bad(format!("tls: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = if mode == SslMode::VerifyCa {
            Arc::new(ChainOnly(webpki))
        } else {
            webpki
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth()
    };
    Ok(Connection {
        config,
        tls: MakeRustlsConnect::new(tls),
        mode,
    })
}

/// A pool of connections for one of Sluice's components: `TimeZone=UTC` on every session (DMS
/// timestamps carry no zone and are UTC, so `timestamptz` values never shift with the server's
/// default), the component's `application_name`, a 10 s connect timeout unless the URL sets
/// one, TLS as [`connection`] says. Connects lazily.
pub fn pool(
    url: &str,
    size: usize,
    application_name: &str,
) -> Result<deadpool_postgres::Pool, Error> {
    pool_builder(url, size, application_name)?
        .build()
        .map_err(|e| Error::Config {
            setting: "SLUICE_DATABASE_URL",
            reason: format!("{e} (in {})", redact_url(url)),
        })
}

/// [`pool`]'s builder, for a caller that adds hooks before building it.
pub fn pool_builder(
    url: &str,
    size: usize,
    application_name: &str,
) -> Result<deadpool_postgres::PoolBuilder, Error> {
    register_password(url);
    let Connection {
        mut config, tls, ..
    } = connection(url)?;
    config.options("-c TimeZone=UTC");
    config.application_name(application_name);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    Ok(deadpool_postgres::Pool::builder(manager).max_size(size))
}

/// A PostgreSQL error's text: the server's message and detail where there is one, else the
/// error's chain (connection errors name no URL).
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({})", db.message(), detail),
            None => db.message().to_owned(),
        },
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

/// Registers a connection string's password with the log scrubber
/// ([`crate::telemetry::add_secret`]), as written and as decoded, so no log line, panic or
/// manifest error can carry it, whichever library writes the text.
pub fn register_password(url: &str) {
    use crate::telemetry::add_secret;
    if let Some((_, rest)) = url.split_once("://") {
        if let Some((creds, _)) = rest.rsplit_once('@') {
            if let Some((_, p)) = creds.split_once(':') {
                add_secret(p);
                add_secret(&percent_decode(p));
            }
        }
    }
    let (rest, _, _) = split_tls_params(url);
    if let Ok(config) = rest.parse::<tokio_postgres::Config>() {
        if let Some(p) = config.get_password() {
            add_secret(&String::from_utf8_lossy(p));
        }
    }
}

/// Removes `sslmode` and `sslrootcert` from a URL's query or a `key=value` string.
fn split_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let mut mode = None;
    let mut root = None;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), None, None);
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("sslmode", v)) => mode = Some(percent_decode(v)),
                Some(("sslrootcert", v)) => root = Some(percent_decode(v)),
                _ if pair.is_empty() => {}
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, mode, root);
    }
    let mut kept = Vec::new();
    for token in url.split_whitespace() {
        match token.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v.trim_matches('\'').to_owned()),
            Some(("sslrootcert", v)) => root = Some(v.trim_matches('\'').to_owned()),
            _ => kept.push(token),
        }
    }
    (kept.join(" "), mode, root)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` / `require`: encryption without authenticating the server, as libpq does.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
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
        verify_tls12_signature(
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
        verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_urls_and_key_value_strings() {
        let (rest, mode, root) = split_tls_params(
            "postgres://u:p@db.example:5432/w?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Frds.pem",
        );
        assert_eq!(rest, "postgres://u:p@db.example:5432/w?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/rds.pem"));
        let (rest, mode, root) = split_tls_params("host=db user=u sslmode=require dbname=w");
        assert_eq!(rest, "host=db user=u dbname=w");
        assert_eq!((mode.as_deref(), root), (Some("require"), None));
        let (rest, mode, _) = split_tls_params("postgres://u@h/w");
        assert_eq!((rest.as_str(), mode), ("postgres://u@h/w", None));
    }

    #[test]
    fn modes_map_to_what_tokio_postgres_knows() {
        let c = connection("postgres://u:secret@h/w?sslmode=disable").unwrap();
        assert_eq!(c.config.get_ssl_mode(), PgSslMode::Disable);
        let c = connection("postgres://u:secret@h/w").unwrap();
        assert_eq!(
            (c.mode, c.config.get_ssl_mode()),
            (SslMode::Prefer, PgSslMode::Prefer)
        );
        let c = connection("postgres://u:secret@h/w?sslmode=require").unwrap();
        assert_eq!(c.config.get_ssl_mode(), PgSslMode::Require);
        let e = connection("postgres://u:secret@h/w?sslmode=sometimes")
            .err()
            .unwrap();
        assert!(e.to_string().contains("unknown sslmode"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e =
            connection("postgres://u:secret@h/w?sslmode=verify-full&sslrootcert=/nonexistent.pem")
                .err()
                .unwrap();
        assert!(e.to_string().contains("cannot read sslrootcert"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
