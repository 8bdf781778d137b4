//! TLS for clients and the HTTP API (`--tls-cert`, `--tls-key`: PEM files): the rustls
//! server configuration of the comet's WSS listener (HTTP/1.1 only, for the WebSocket
//! upgrade) and of the HTTPS listener (the same certificate, also offering HTTP/2), and the
//! handshake each of their connections goes through before its own protocol starts —
//! bounded in time, abandoned on shutdown, every failure counted
//! (`goim_tls_handshake_failures_total{listener}`) and logged at most once per interval.
//! Cluster traffic has its own TLS (QUIC, `goim_net::quic`); this one faces clients.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use goim_net::LogEvery;

/// ALPN names, in the server's order of preference.
const HTTP1: &[u8] = b"http/1.1";
const H2: &[u8] = b"h2";

/// The server side of client TLS: a certificate chain and its key.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ServerConfig>,
    acceptor: TlsAcceptor,
    failures_log: Arc<LogEvery>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Loads the certificate chain (leaf first) and private key from PEM files; a file that
    /// is missing, holds no certificate, or a key that does not match fails here, so a node
    /// never starts with TLS it cannot serve.
    pub fn from_pem_files(cert: &Path, key: &Path) -> anyhow::Result<ClientTls> {
        let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{}: {e:?}", cert.display()))?;
        if chain.is_empty() {
            bail!("{}: no PEM certificate in it", cert.display());
        }
        let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| anyhow::anyhow!("{}: {e:?}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .with_context(|| format!("{} does not go with {}", key.display(), cert.display()))?;
        // The WebSocket upgrade is an HTTP/1.1 request (`offering_h2` for the API).
        config.alpn_protocols = vec![HTTP1.to_vec()];
        Ok(ClientTls::with(config))
    }

    fn with(config: rustls::ServerConfig) -> ClientTls {
        let config = Arc::new(config);
        ClientTls {
            acceptor: TlsAcceptor::from(config.clone()),
            config,
            failures_log: Arc::new(LogEvery::new(crate::listen::LOG_INTERVAL)),
        }
    }

    /// The same certificate, offering HTTP/2 before HTTP/1.1 (the HTTPS API listener): a
    /// producer can keep many pushes in flight on one connection. Clients that offer no ALPN,
    /// or only `http/1.1`, get HTTP/1.1 as before.
    pub fn offering_h2(&self) -> ClientTls {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![H2.to_vec(), HTTP1.to_vec()];
        ClientTls::with(config)
    }

    /// Whether the handshake on `tls` chose HTTP/2.
    pub fn chose_h2<S>(tls: &TlsStream<S>) -> bool {
        tls.get_ref().1.alpn_protocol() == Some(H2)
    }

    /// Runs the server handshake on `stream` within `timeout`; `None` when it failed, timed
    /// out (both counted under `listener`) or the node is shutting down.
    pub async fn accept<S>(
        &self,
        stream: S,
        listener: &'static str,
        timeout: Duration,
        shutdown: &CancellationToken,
    ) -> Option<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let failure = tokio::select! {
            _ = shutdown.cancelled() => return None,
            done = tokio::time::timeout(timeout, self.acceptor.accept(stream)) => match done {
                Ok(Ok(tls)) => return Some(tls),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no handshake within {} ms", timeout.as_millis()),
            },
        };
        metrics::counter!("goim_tls_handshake_failures_total", "listener" => listener).increment(1);
        if let Some(suppressed) = self.failures_log.allow() {
            tracing::info!(listener, error = %failure, suppressed,
                "TLS handshake failed (at most one line per {}s)", crate::listen::LOG_INTERVAL.as_secs());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn loads_a_pair_and_refuses_mismatches_and_junk() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "a");
        let (_, other_key) = write_pair(dir.path(), "b");
        assert!(ClientTls::from_pem_files(&cert, &key).is_ok());
        let mismatch = ClientTls::from_pem_files(&cert, &other_key).err().unwrap().to_string();
        assert!(mismatch.contains("does not go with"), "{mismatch}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let empty = ClientTls::from_pem_files(&junk, &key).err().unwrap().to_string();
        assert!(empty.contains("no PEM certificate"), "{empty}");
        let missing = ClientTls::from_pem_files(&dir.path().join("none.pem"), &key).err().unwrap();
        assert!(missing.to_string().contains("reading"), "{missing}");
    }
}
