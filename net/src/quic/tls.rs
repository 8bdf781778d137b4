//! Cluster TLS for QUIC, in one of two modes.
//!
//! - **Dev mode** (no cluster CA given): on first start a node generates a self-signed
//!   certificate into its data dir and reuses it afterwards. Peers accept any certificate but
//!   still check the handshake signatures (the link is encrypted, peers are not authenticated).
//! - **Cluster mTLS** (`--cluster-ca/--cluster-cert/--cluster-key`, certificates from
//!   `goim cluster certs`): the server requires a client certificate and both sides verify the
//!   other's chain against the cluster CA. Peers are dialled by IP, so every node certificate
//!   carries the one DNS name [`SERVER_NAME`] and clients verify the server against that name.
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::QuicError;

const ALPN: &[u8] = b"goim/1";
/// The name every node's certificate carries and every client dials.
pub const SERVER_NAME: &str = "goim.cluster";

pub struct ClusterTls {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The cluster CA (mTLS mode); None = dev mode.
    ca: Option<Arc<RootCertStore>>,
}

impl ClusterTls {
    /// Loads `quic-cert.der` / `quic-key.der` from `dir`, generating them on first start.
    pub fn load_or_generate(dir: &Path) -> Result<ClusterTls, QuicError> {
        let cert_path = dir.join("quic-cert.der");
        let key_path = dir.join("quic-key.der");
        if cert_path.exists() && key_path.exists() {
            let cert = std::fs::read(&cert_path)?;
            let key = std::fs::read(&key_path)?;
            let chain = vec![cert.into()];
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
            check_pair(&chain, &key, &cert_path, &key_path).map_err(|why| {
                QuicError::Tls(format!(
                    "{why}. These two files are this node's generated dev-mode pair: remove both and \
                     it generates a new one at start (dev-mode peers accept any certificate)"
                ))
            })?;
            return Ok(ClusterTls { chain, key, ca: None });
        }
        let tls = ClusterTls::generate()?;
        std::fs::create_dir_all(dir)?;
        std::fs::write(&key_path, tls.key.secret_der())?;
        if let Some(cert) = tls.chain.first() {
            std::fs::write(&cert_path, cert.as_ref())?;
        }
        Ok(tls)
    }

    /// A fresh in-memory certificate (tests, ephemeral nodes).
    pub fn generate() -> Result<ClusterTls, QuicError> {
        let ck = rcgen::generate_simple_self_signed(vec![SERVER_NAME.into()])
            .map_err(|e| QuicError::Tls(e.to_string()))?;
        Ok(ClusterTls {
            chain: vec![ck.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der())),
            ca: None,
        })
    }

    /// Cluster mTLS: the CA's PEM (one or more certificates), this node's certificate chain
    /// PEM and its private key PEM. Checks at once that the certificate chains to the CA,
    /// names [`SERVER_NAME`] and is valid now, so a wrong file stops the node at start.
    pub fn from_pem_files(ca: &Path, cert: &Path, key: &Path) -> Result<ClusterTls, QuicError> {
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| QuicError::Tls(format!("reading {}: {e}", p.display())));
        let pem_err =
            |p: &Path, e: rustls::pki_types::pem::Error| QuicError::Tls(format!("{}: {e:?}", p.display()));
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&read(ca)?) {
            roots
                .add(c.map_err(|e| pem_err(ca, e))?)
                .map_err(|e| QuicError::Tls(format!("{}: {e}", ca.display())))?;
        }
        if roots.is_empty() {
            return Err(QuicError::Tls(format!("{}: no certificate in it", ca.display())));
        }
        let chain = CertificateDer::pem_slice_iter(&read(cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err(cert, e))?;
        let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| pem_err(key, e))?;
        let (end, intermediates) = chain
            .split_first()
            .ok_or_else(|| QuicError::Tls(format!("{}: no certificate in it", cert.display())))?;
        let roots = Arc::new(roots);
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| QuicError::Tls(e.to_string()))?;
        let name = ServerName::try_from(SERVER_NAME).map_err(|e| QuicError::Tls(e.to_string()))?;
        verifier.verify_server_cert(end, intermediates, &name, &[], UnixTime::now()).map_err(|e| {
            QuicError::Tls(format!(
                "{} is not a cluster certificate of {}: {e}",
                cert.display(),
                ca.display()
            ))
        })?;
        check_pair(&chain, &key_der, cert, key).map_err(QuicError::Tls)?;
        Ok(ClusterTls { chain, key: key_der, ca: Some(roots) })
    }

    /// True in cluster mTLS mode.
    pub fn is_mutual(&self) -> bool {
        self.ca.is_some()
    }

    pub(crate) fn server_config(&self) -> Result<quinn::ServerConfig, QuicError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| QuicError::Tls(e.to_string()))?;
        let builder = match &self.ca {
            Some(roots) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                    .build()
                    .map_err(|e| QuicError::Tls(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut tls = builder
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| QuicError::Tls(e.to_string()))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| QuicError::Tls(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(transport());
        Ok(config)
    }

    pub(crate) fn client_config(&self) -> Result<quinn::ClientConfig, QuicError> {
        let Some(roots) = &self.ca else {
            return ClusterTls::client_config_for(ALPN);
        };
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| QuicError::Tls(e.to_string()))?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| QuicError::Tls(e.to_string()))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        quinn_client(tls)
    }

    /// A client config offering `alpn` and no certificate, accepting any server (tests use
    /// it to speak to a node as a stranger).
    pub fn client_config_for(alpn: &[u8]) -> Result<quinn::ClientConfig, QuicError> {
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| QuicError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider())))
            .with_no_client_auth();
        tls.alpn_protocols = vec![alpn.to_vec()];
        quinn_client(tls)
    }

    /// A client config presenting this certificate while accepting any server (tests use it
    /// to knock as a stranger holding a foreign or self-signed certificate).
    pub fn stranger_client_config(&self) -> Result<quinn::ClientConfig, QuicError> {
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| QuicError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider())))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| QuicError::Tls(e.to_string()))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        quinn_client(tls)
    }
}

fn quinn_client(tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, QuicError> {
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| QuicError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

/// Checks that `key` is a private key rustls can sign with and that the first certificate
/// of `chain` carries its public key, naming the file at fault. Without this a damaged or
/// mismatched file shows up only when the endpoint is built, as a TLS error naming neither.
fn check_pair(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), String> {
    let signing = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| format!("{}: not a usable private key: {e}", key_path.display()))?;
    CertifiedKey::new(chain.to_vec(), signing).keys_match().map_err(|e| {
        format!("{}: not the certificate of the key in {}: {e}", cert_path.display(), key_path.display())
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(4096u32.into());
    t.keep_alive_interval(Some(std::time::Duration::from_secs(1)));
    // A dead peer is noticed within 5 s even with no traffic in flight.
    if let Ok(idle) = std::time::Duration::from_secs(5).try_into() {
        t.max_idle_timeout(Some(idle));
    }
    t.stream_receive_window((8u32 << 20).into());
    t.receive_window((32u32 << 20).into());
    t.send_window(32 << 20);
    Arc::new(t)
}

/// Accepts any server certificate, verifies handshake signatures (dev mode, see module doc).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
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

    /// Flips the byte at `at` of `path`.
    fn flip(path: &Path, at: usize) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at] ^= 0xff;
        std::fs::write(path, bytes).unwrap();
    }

    fn error_of(dir: &Path) -> String {
        match ClusterTls::load_or_generate(dir) {
            Ok(_) => panic!("a damaged pair was loaded"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_damaged_dev_pair_is_refused_naming_the_file_and_the_remedy() {
        let dir = tempfile::tempdir().unwrap();
        let first = ClusterTls::load_or_generate(dir.path()).unwrap();
        let again = ClusterTls::load_or_generate(dir.path()).unwrap();
        assert_eq!(first.chain, again.chain, "the generated pair is reused");
        assert!(again.server_config().is_ok());

        // The key's first byte is its DER tag: the key no longer parses.
        flip(&dir.path().join("quic-key.der"), 0);
        let e = error_of(dir.path());
        assert!(e.contains("quic-key.der: not a usable private key"), "{e}");
        assert!(e.contains("remove both"), "{e}");

        // Another node's key beside this node's certificate.
        let other = tempfile::tempdir().unwrap();
        ClusterTls::load_or_generate(other.path()).unwrap();
        std::fs::copy(other.path().join("quic-key.der"), dir.path().join("quic-key.der")).unwrap();
        let e = error_of(dir.path());
        assert!(e.contains("quic-cert.der: not the certificate of the key in"), "{e}");

        // Both removed: a new pair.
        std::fs::remove_file(dir.path().join("quic-key.der")).unwrap();
        std::fs::remove_file(dir.path().join("quic-cert.der")).unwrap();
        let fresh = ClusterTls::load_or_generate(dir.path()).unwrap();
        assert_ne!(fresh.chain, first.chain);
    }
}
