//! `sslmode` as libpq understands it, over rustls:
//! - `disable`: plain TCP;
//! - `prefer` (libpq's default) and `require`: TLS, the server's
//!   certificate is not checked (libpq does the same for these modes);
//! - `verify-ca` / `verify-full`: TLS, the certificate must chain to
//!   `sslrootcert=PATH` (a PEM file). rustls always checks the host name as
//!   well, so `verify-ca` behaves like `verify-full`.
//!
//! As in libpq, `sslmode` does not apply to a Unix-domain socket (a host
//! that is a directory, `postgres://user@%2Fvar%2Frun%2Fpostgresql/db` or
//! `?host=/var/run/postgresql`): PostgreSQL serves no TLS there. This holds
//! when every host of the URL is a socket (and no `hostaddr` is given);
//! in a list that mixes sockets and TCP hosts, the one `sslmode` applies
//! to all, so `require` fails on the sockets and moves on to the next host.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::str::FromStr;
use std::sync::Arc;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    Verify,
}

/// Splits confab's own view of `sslmode` / `sslrootcert` off the URL and
/// builds the driver config plus the TLS connector.
pub fn parse(url: &str) -> Result<(tokio_postgres::Config, Tls), String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut mode = TlsMode::Prefer;
    let mut root: Option<String> = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => {
                mode = match v {
                    "disable" => TlsMode::Disable,
                    "allow" | "prefer" => TlsMode::Prefer,
                    "require" => TlsMode::Require,
                    "verify-ca" | "verify-full" => TlsMode::Verify,
                    other => {
                        return Err(format!(
                            "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                        ))
                    }
                }
            }
            "sslrootcert" => root = Some(v.to_owned()),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let mut config = tokio_postgres::Config::from_str(&url).map_err(|e| e.to_string())?;
    // With `hostaddr` the driver connects over TCP whatever the host says.
    let hosts = config.get_hosts();
    let only_sockets = !hosts.is_empty()
        && config.get_hostaddrs().is_empty()
        && hosts.iter().all(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)));
    config.ssl_mode(match mode {
        _ if only_sockets => SslMode::Disable,
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        TlsMode::Require | TlsMode::Verify => SslMode::Require,
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let tls = if mode == TlsMode::Verify {
        let path = root.ok_or("sslmode=verify-ca and verify-full need sslrootcert=PATH (a PEM file)")?;
        let pem = std::fs::read(&path).map_err(|e| format!("cannot read sslrootcert {path}: {e}"))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile_certs(&pem) {
            roots.add(cert).map_err(|e| format!("bad certificate in {path}: {e}"))?;
        }
        if roots.is_empty() {
            return Err(format!("no certificate found in sslrootcert {path}"));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth()
    };
    Ok((config, Tls(MakeRustlsConnect::new(tls))))
}

/// The TLS connector confab hands the driver: rustls's, except that for a
/// Unix-domain socket, where the driver asks for a connector with an empty
/// host name and then never uses it, it is made for "localhost" (rustls
/// refuses an empty name, which failed every connection over a socket).
#[derive(Clone)]
pub struct Tls(MakeRustlsConnect);

impl<S> MakeTlsConnect<S> for Tls
where
    MakeRustlsConnect: MakeTlsConnect<S>,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        let domain = if domain.is_empty() { "localhost" } else { domain };
        MakeTlsConnect::<S>::make_tls_connect(&mut self.0, domain)
    }
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect()
}

/// libpq's `sslmode=require`: encrypt, but take any certificate.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmodes() {
        let (c, _) = parse("postgres://u:p@127.0.0.1:5433/db?sslmode=disable").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Disable);
        assert_eq!(c.get_dbname(), Some("db"));
        let (c, _) = parse("postgres://u@h/db?sslmode=require&connect_timeout=3").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        let (c, _) = parse("postgres://u@h/db").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Prefer);
        assert!(parse("postgres://u@h/db?sslmode=verify-full")
            .err()
            .unwrap()
            .contains("sslrootcert"));
        assert!(parse("postgres://u@h/db?sslmode=bogus")
            .err()
            .unwrap()
            .contains("sslmode=bogus"));
    }

    /// A Unix-domain socket, named either way, gets no TLS whatever the
    /// sslmode (as in libpq), and a connector can be made for it: the
    /// driver asks with an empty host name.
    #[test]
    fn a_unix_socket_takes_no_tls() {
        for url in [
            "postgres://u@%2Fvar%2Frun%2Fpostgresql:5433/db?sslmode=require",
            "postgres://u@/db?host=/var/run/postgresql&sslmode=prefer",
        ] {
            let (c, mut tls) = parse(url).unwrap();
            assert_eq!(c.get_ssl_mode(), SslMode::Disable, "{url}");
            assert!(
                MakeTlsConnect::<tokio::net::TcpStream>::make_tls_connect(&mut tls, "").is_ok(),
                "{url}"
            );
        }
        let (c, _) = parse("postgres://u@%2Ftmp:5433,db.example:5432/db?sslmode=require").unwrap();
        assert_eq!(
            c.get_ssl_mode(),
            SslMode::Require,
            "a TCP host among them keeps its TLS"
        );
        let (c, _) = parse("postgres://u@/db?host=/tmp&hostaddr=10.0.0.5&sslmode=require").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Require, "hostaddr connects over TCP");
    }
}
