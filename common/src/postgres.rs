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
//! | `verify-ca` | always | chain checked against `sslrootcert` |
//! | `verify-full` | always | chain and host name checked against `sslrootcert` |
//!
//! As libpq does, a mode that verifies needs root certificates: `sslrootcert`, else the file
//! `~/.postgresql/root.crt`; when neither exists the connection string is refused (never a
//! silent fall-back to every public CA, which would let any certificate a public CA signed
//! pass `verify-ca`, whatever its name). `sslrootcert=system` means the system's trusted roots,
//! as in libpq 16: it makes `verify-full` the default and refuses any weaker mode, because a
//! public CA's chain proves nothing without the name.
//!
//! Every connection carries TCP keepalives ([`KEEPALIVE_IDLE`], [`KEEPALIVE_INTERVAL`],
//! [`KEEPALIVE_RETRIES`]) and a TCP user timeout ([`TCP_USER_TIMEOUT`]), on the client and,
//! through the session's options, on the server, so either side notices a dead peer (a host
//! gone, a half-open connection) within about a minute instead of the kernel's two hours,
//! unless the connection string sets its own. Components may add [`SessionLimits`]: the
//! server's `lock_timeout`, `statement_timeout` and `idle_in_transaction_session_timeout`.
//!
//! Invariants: a mode that verifies never falls back to an unverified or clear connection; the
//! root certificates come only from `sslrootcert` (or libpq's default file) when it is given,
//! and from the system only with `sslrootcert=system`; errors never carry the password (they
//! name the URL redacted).

use crate::config::redact_url;
use crate::error::Error;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;

/// The setting a bad connection string is reported under.
const DATABASE_URL: &str = "SLUICE_DATABASE_URL";
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

/// Idle time before the first keepalive probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Time between two keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the connection is dropped: 30 s + 3 x 10 s, a dead peer is
/// noticed within a minute of silence.
pub const KEEPALIVE_RETRIES: u32 = 3;
/// Longest time sent data may stay unacknowledged (keepalives are not sent while data is in
/// flight, e.g. during a `COPY`; without this the kernel retransmits for about 15 minutes).
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the root certificates of a verifying mode come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    File(String),
    System,
}

/// libpq's rules for `sslmode` and `sslrootcert` (see the module docs); `default_file` is
/// libpq's `~/.postgresql/root.crt` when it exists. A refusal is an [`Error::Config`] of
/// `SLUICE_DATABASE_URL`, whose reason [`connection`] completes with the (redacted) URL.
fn tls_choice(
    sslmode: Option<&str>,
    rootcert: Option<&str>,
    default_file: Option<String>,
) -> Result<(SslMode, Option<Roots>), Error> {
    let refused = |reason: String| Error::Config {
        setting: DATABASE_URL,
        reason,
    };
    let system = rootcert == Some("system");
    let mode = match sslmode {
        None if system => SslMode::VerifyFull,
        None => SslMode::Prefer,
        Some(m) => SslMode::parse(m).ok_or_else(|| refused(format!("unknown sslmode {m:?}")))?,
    };
    if system && mode != SslMode::VerifyFull {
        return Err(refused(format!(
            "sslrootcert=system needs sslmode=verify-full, not {}: the system's public roots \
             vouch for a certificate's name, not for the server",
            sslmode.unwrap_or_default()
        )));
    }
    if !mode.verifies() {
        return Ok((mode, None));
    }
    let roots = match rootcert {
        Some("system") => Roots::System,
        Some(path) => Roots::File(path.to_owned()),
        None => Roots::File(default_file.ok_or_else(|| {
            refused(format!(
                "sslmode={} needs the root certificates that sign the server's certificate: \
                 set sslrootcert to their file (or sslrootcert=system with verify-full for the \
                 system's trusted roots); there is no ~/.postgresql/root.crt",
                sslmode.unwrap_or_default()
            ))
        })?),
    };
    Ok((mode, Some(roots)))
}

/// libpq's default root certificate file, `~/.postgresql/root.crt`, if it exists.
fn default_root_file() -> Option<String> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    let path = std::path::Path::new(&home).join(".postgresql/root.crt");
    path.is_file().then(|| path.to_string_lossy().into_owned())
}

/// Parses a connection string and builds its TLS connector, with TCP keepalives.
pub fn connection(url: &str) -> Result<Connection, Error> {
    let bad = |reason: String| Error::Config {
        setting: DATABASE_URL,
        reason: format!("{reason} (in {})", redact_url(url)),
    };
    let (rest, sslmode, rootcert) = split_tls_params(url);
    let (mode, roots) = tls_choice(sslmode.as_deref(), rootcert.as_deref(), default_root_file())
        .map_err(|e| match e {
            Error::Config { reason, .. } => bad(reason),
            other => other,
        })?;
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e: tokio_postgres::Error| bad(e.to_string()))?;
    keepalives(&mut config);
    config.ssl_mode(match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        _ => PgSslMode::Require,
    });
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("tls: {e}")))?;
    let tls = if let Some(roots_from) = roots {
        let mut roots = RootCertStore::empty();
        match &roots_from {
            Roots::File(path) => {
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
            Roots::System => {
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

/// Turns on the client's TCP keepalives and user timeout, except where the connection string
/// set its own (a value other than tokio-postgres's default).
fn keepalives(config: &mut tokio_postgres::Config) {
    config.keepalives(true);
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVE_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(KEEPALIVE_RETRIES);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
}

/// Server-side limits on a component's sessions, set as each connection starts (`None`: the
/// server's own setting, no limit by default). A wait they end fails the statement: 55P03
/// `lock_not_available` for `lock_timeout`, 57014 `query_canceled` for `statement_timeout`;
/// `idle_in_transaction_session_timeout` ends the session (its locks are released).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionLimits {
    pub lock_timeout: Option<Duration>,
    pub statement_timeout: Option<Duration>,
    pub idle_in_transaction: Option<Duration>,
}

/// The startup `options` of every session: `TimeZone=UTC`, the server's side of the TCP
/// keepalives, and `limits`.
pub fn session_options(limits: &SessionLimits) -> String {
    let mut options = format!(
        "-c TimeZone=UTC -c tcp_keepalives_idle={} -c tcp_keepalives_interval={} \
         -c tcp_keepalives_count={} -c tcp_user_timeout={}",
        KEEPALIVE_IDLE.as_secs(),
        KEEPALIVE_INTERVAL.as_secs(),
        KEEPALIVE_RETRIES,
        TCP_USER_TIMEOUT.as_millis()
    );
    for (name, value) in [
        ("lock_timeout", limits.lock_timeout),
        ("statement_timeout", limits.statement_timeout),
        (
            "idle_in_transaction_session_timeout",
            limits.idle_in_transaction,
        ),
    ] {
        if let Some(v) = value {
            options.push_str(&format!(" -c {name}={}", v.as_millis()));
        }
    }
    options
}

/// A pool of connections for one of Sluice's components: `TimeZone=UTC` on every session (DMS
/// timestamps carry no zone and are UTC, so `timestamptz` values never shift with the server's
/// default), the component's `application_name`, a 10 s connect timeout unless the URL sets
/// one, TCP keepalives and TLS as [`connection`] says. Connects lazily.
pub fn pool(
    url: &str,
    size: usize,
    application_name: &str,
) -> Result<deadpool_postgres::Pool, Error> {
    pool_with(url, size, application_name, &SessionLimits::default())
}

/// [`pool`], with server-side limits on every session's waits.
pub fn pool_with(
    url: &str,
    size: usize,
    application_name: &str,
    limits: &SessionLimits,
) -> Result<deadpool_postgres::Pool, Error> {
    pool_builder(url, size, application_name, limits)?
        .build()
        .map_err(|e| Error::Config {
            setting: DATABASE_URL,
            reason: format!("{e} (in {})", redact_url(url)),
        })
}

/// [`pool_with`]'s builder, for a caller that adds hooks before building it.
pub fn pool_builder(
    url: &str,
    size: usize,
    application_name: &str,
    limits: &SessionLimits,
) -> Result<deadpool_postgres::PoolBuilder, Error> {
    register_password(url);
    let Connection {
        mut config, tls, ..
    } = connection(url)?;
    config.options(session_options(limits));
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

    #[test]
    fn verifying_modes_need_root_certificates_as_libpq_does() {
        let file = |p: &str| Some(Roots::File(p.to_owned()));
        // No sslrootcert and no ~/.postgresql/root.crt: refused, never the public roots.
        for mode in ["verify-ca", "verify-full"] {
            let e = tls_choice(Some(mode), None, None).unwrap_err().to_string();
            assert!(
                e.contains(&format!("sslmode={mode} needs the root certificates")),
                "{e}"
            );
            assert!(e.contains("sslrootcert=system"), "{e}");
        }
        // libpq's default file when it exists; sslrootcert when given.
        assert_eq!(
            tls_choice(
                Some("verify-ca"),
                None,
                Some("/home/u/.postgresql/root.crt".into())
            )
            .ok(),
            Some((SslMode::VerifyCa, file("/home/u/.postgresql/root.crt")))
        );
        assert_eq!(
            tls_choice(Some("verify-full"), Some("/etc/rds.pem"), None).ok(),
            Some((SslMode::VerifyFull, file("/etc/rds.pem")))
        );
        // sslrootcert=system: verify-full only, and the default mode then.
        assert_eq!(
            tls_choice(None, Some("system"), None).ok(),
            Some((SslMode::VerifyFull, Some(Roots::System)))
        );
        assert_eq!(
            tls_choice(Some("verify-full"), Some("system"), None).ok(),
            Some((SslMode::VerifyFull, Some(Roots::System)))
        );
        for weak in ["verify-ca", "require", "prefer", "disable"] {
            let e = tls_choice(Some(weak), Some("system"), None)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("sslrootcert=system needs sslmode=verify-full"),
                "{e}"
            );
        }
        // Modes that do not verify need no roots.
        assert_eq!(
            tls_choice(Some("require"), None, None).ok(),
            Some((SslMode::Require, None))
        );
        assert_eq!(
            tls_choice(None, None, None).ok(),
            Some((SslMode::Prefer, None))
        );
        // Through the connection string, without the password in the error.
        let e = connection("postgres://u:secret@h/w?sslmode=verify-ca")
            .err()
            .unwrap()
            .to_string();
        if default_root_file().is_none() {
            assert!(e.contains("needs the root certificates"), "{e}");
        }
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn connections_carry_tcp_keepalives_unless_the_url_sets_them() {
        let c = connection("postgres://u:secret@h/w").unwrap();
        assert!(c.config.get_keepalives());
        assert_eq!(c.config.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(c.config.get_keepalives_interval(), Some(KEEPALIVE_INTERVAL));
        assert_eq!(c.config.get_keepalives_retries(), Some(KEEPALIVE_RETRIES));
        assert_eq!(c.config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        // A dead peer is noticed within about a minute of silence.
        let detect = KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_RETRIES;
        assert!(detect <= Duration::from_secs(60), "{detect:?}");
        let c =
            connection("postgres://u:secret@h/w?keepalives_idle=5&keepalives_retries=9").unwrap();
        assert_eq!(c.config.get_keepalives_idle(), Duration::from_secs(5));
        assert_eq!(c.config.get_keepalives_retries(), Some(9));
        assert_eq!(c.config.get_keepalives_interval(), Some(KEEPALIVE_INTERVAL));
    }

    #[test]
    fn sessions_start_with_utc_server_keepalives_and_the_limits_given() {
        let plain = session_options(&SessionLimits::default());
        assert!(plain.starts_with("-c TimeZone=UTC "), "{plain}");
        for part in [
            "-c tcp_keepalives_idle=30",
            "-c tcp_keepalives_interval=10",
            "-c tcp_keepalives_count=3",
            "-c tcp_user_timeout=60000",
        ] {
            assert!(plain.contains(part), "{plain}");
        }
        assert!(!plain.contains("lock_timeout"), "{plain}");
        assert!(!plain.contains("statement_timeout"), "{plain}");
        let limited = session_options(&SessionLimits {
            lock_timeout: Some(Duration::from_secs(30)),
            statement_timeout: Some(Duration::from_secs(3600)),
            idle_in_transaction: Some(Duration::from_millis(1500)),
        });
        assert!(
            limited.ends_with(
                " -c lock_timeout=30000 -c statement_timeout=3600000 \
             -c idle_in_transaction_session_timeout=1500"
            ),
            "{limited}"
        );
        let pool = pool_with(
            "postgres://u:secret@h/w",
            1,
            "test",
            &SessionLimits::default(),
        );
        assert!(pool.is_ok());
    }
}
