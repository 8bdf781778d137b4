//! Cluster TLS for QUIC. On first start a node generates a self-signed certificate into its
//! data dir and reuses it afterwards. Dev mode: peers accept any certificate but still check
//! the handshake signatures (the link is encrypted, peers are not authenticated); CA-signed
//! certificates with mutual auth belong to the security stage.
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::QuicError;

const ALPN: &[u8] = b"goim/1";
/// The name every node's certificate carries and every client dials.
pub const SERVER_NAME: &str = "goim.cluster";

pub struct ClusterTls {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl ClusterTls {
    /// Loads `quic-cert.der` / `quic-key.der` from `dir`, generating them on first start.
    pub fn load_or_generate(dir: &Path) -> Result<ClusterTls, QuicError> {
        let cert_path = dir.join("quic-cert.der");
        let key_path = dir.join("quic-key.der");
        if cert_path.exists() && key_path.exists() {
            let cert = std::fs::read(&cert_path)?;
            let key = std::fs::read(&key_path)?;
            return Ok(ClusterTls { cert: cert.into(), key: key.into() });
        }
        let tls = ClusterTls::generate()?;
        std::fs::create_dir_all(dir)?;
        std::fs::write(&key_path, tls.key.secret_pkcs8_der())?;
        std::fs::write(&cert_path, tls.cert.as_ref())?;
        Ok(tls)
    }

    /// A fresh in-memory certificate (tests, ephemeral nodes).
    pub fn generate() -> Result<ClusterTls, QuicError> {
        let ck = rcgen::generate_simple_self_signed(vec![SERVER_NAME.into()])
            .map_err(|e| QuicError::Tls(e.to_string()))?;
        Ok(ClusterTls {
            cert: ck.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
        })
    }

    pub(crate) fn server_config(&self) -> Result<quinn::ServerConfig, QuicError> {
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| QuicError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], PrivateKeyDer::Pkcs8(self.key.clone_key()))
            .map_err(|e| QuicError::Tls(e.to_string()))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| QuicError::Tls(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(transport());
        Ok(config)
    }

    pub(crate) fn client_config(&self) -> Result<quinn::ClientConfig, QuicError> {
        ClusterTls::client_config_for(ALPN)
    }

    /// A client config offering `alpn` (tests use it to speak to a node as a stranger).
    pub fn client_config_for(alpn: &[u8]) -> Result<quinn::ClientConfig, QuicError> {
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| QuicError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider())))
            .with_no_client_auth();
        tls.alpn_protocols = vec![alpn.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| QuicError::Tls(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport());
        Ok(config)
    }
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
