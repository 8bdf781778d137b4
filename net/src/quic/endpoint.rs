//! The endpoint: one quinn endpoint that both accepts (routing each stream by its service
//! byte) and dials (one cached connection per peer address, redialled when it dies).
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use quinn::{Connection, RecvStream, SendStream};
use serde::{de::DeserializeOwned, Serialize};
use tracing::{debug, warn};

use super::frame::{read_frame, write_frame};
use super::tls::{ClusterTls, SERVER_NAME};
use super::QuicError;
use crate::rpc::Service;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const SERVICE_BYTE_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one log line per this interval about refused handshakes.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

/// An accepted bi-stream, after its service byte.
pub struct BiStream {
    pub send: SendStream,
    pub recv: RecvStream,
    pub peer: SocketAddr,
}

/// What a role registers to serve one `Service`.
pub trait StreamHandler: Send + Sync + 'static {
    fn handle(self: Arc<Self>, stream: BiStream) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

pub type Router = HashMap<u8, Arc<dyn StreamHandler>>;

type PeerSlot = Arc<tokio::sync::Mutex<Option<Connection>>>;

pub struct QuicEndpoint {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    peers: Mutex<HashMap<String, PeerSlot>>,
    handlers: RwLock<Router>,
}

impl QuicEndpoint {
    /// Binds the UDP socket and starts accepting. Streams for services no handler is
    /// registered for (yet) are refused and counted.
    pub fn bind(addr: SocketAddr, tls: &ClusterTls) -> Result<Arc<QuicEndpoint>, QuicError> {
        let endpoint = quinn::Endpoint::server(tls.server_config()?, addr)?;
        let this = Arc::new(QuicEndpoint {
            endpoint,
            client: tls.client_config()?,
            peers: Mutex::new(HashMap::new()),
            handlers: RwLock::new(HashMap::new()),
        });
        tokio::spawn(accept_loop(this.clone()));
        Ok(this)
    }

    pub fn local_addr(&self) -> Result<SocketAddr, QuicError> {
        Ok(self.endpoint.local_addr()?)
    }

    pub fn register(&self, service: Service, handler: Arc<dyn StreamHandler>) {
        if let Ok(mut h) = self.handlers.write() {
            h.insert(service as u8, handler);
        }
    }

    fn handler(&self, byte: u8) -> Option<Arc<dyn StreamHandler>> {
        self.handlers.read().ok().and_then(|h| h.get(&byte).cloned())
    }

    /// Opens a stream for `service` to `peer` (HOST:PORT), dialling or redialling as needed.
    pub async fn open(&self, peer: &str, service: Service) -> Result<(SendStream, RecvStream), QuicError> {
        let slot = {
            let mut peers = self.peers.lock().map_err(|_| QuicError::Tls("poisoned".into()))?;
            peers.entry(peer.to_string()).or_default().clone()
        };
        let mut guard = slot.lock().await;
        for attempt in 0..2 {
            let conn = match guard.as_ref() {
                Some(c) if c.close_reason().is_none() => c.clone(),
                _ => {
                    let c = self.dial(peer).await?;
                    *guard = Some(c.clone());
                    c
                }
            };
            match conn.open_bi().await {
                Ok((mut send, recv)) => {
                    drop(guard);
                    send.write_all(&[service as u8]).await?;
                    return Ok((send, recv));
                }
                Err(e) if attempt == 0 => {
                    debug!(peer, error = %e, "cached connection dead, redialling");
                    *guard = None;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(QuicError::NoReply)
    }

    /// Drops the cached connection to `peer` (its process is known to be gone): the next
    /// `open` dials afresh instead of waiting on a connection its new process never knew.
    pub fn forget(&self, peer: &str) {
        let slot = match self.peers.lock() {
            Ok(mut peers) => peers.remove(peer),
            Err(_) => None,
        };
        if let Some(conn) = slot.and_then(|s| s.try_lock().ok().and_then(|mut c| c.take())) {
            conn.close(0u32.into(), b"peer process gone");
        }
    }

    async fn dial(&self, peer: &str) -> Result<Connection, QuicError> {
        let addr = tokio::net::lookup_host(peer)
            .await
            .map_err(|e| QuicError::Resolve(peer.into(), e.to_string()))?
            .next()
            .ok_or_else(|| QuicError::Resolve(peer.into(), "no address".into()))?;
        let connecting = self.endpoint.connect_with(self.client.clone(), addr, SERVER_NAME)?;
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => {
                if is_tls_refusal(&e) {
                    handshake_refused("outgoing", addr, &e);
                }
                Err(e.into())
            }
            Err(_) => Err(QuicError::DialTimeout(peer.to_string())),
        }
    }

    /// Unary call: one request frame, one reply frame, bounded by `timeout`.
    pub async fn call<Req, Resp>(
        &self,
        peer: &str,
        service: Service,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, QuicError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let work = async {
            let (mut send, mut recv) = self.open(peer, service).await?;
            write_frame(&mut send, req).await?;
            send.finish()?;
            read_frame::<Resp>(&mut recv).await?.ok_or(QuicError::NoReply)
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| QuicError::Timeout)?
    }

    /// Closes every connection and waits briefly for peers to be told.
    pub async fn shutdown(&self) {
        self.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

async fn accept_loop(this: Arc<QuicEndpoint>) {
    while let Some(incoming) = this.endpoint.accept().await {
        let this = this.clone();
        let remote = incoming.remote_address();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    metrics::counter!("goim_quic_rejected_total", "reason" => "handshake").increment(1);
                    handshake_refused("incoming", remote, &e);
                    return;
                }
            };
            serve_connection(this, conn).await;
        });
    }
}

/// A handshake the TLS layer refused (a peer without a certificate, or with one not from the
/// cluster CA), as opposed to one that timed out or was closed.
fn is_tls_refusal(e: &quinn::ConnectionError) -> bool {
    // QUIC carries TLS alerts as CRYPTO_ERROR codes 0x100..=0x1ff.
    let code = match e {
        quinn::ConnectionError::TransportError(t) => t.code,
        quinn::ConnectionError::ConnectionClosed(c) => c.error_code,
        _ => return false,
    };
    (0x100..=0x1ff).contains(&u64::from(code))
}

/// Counts a refused handshake (`goim_quic_handshake_refused_total{side}`) and logs it, at
/// most one line per `REFUSED_LOG_EVERY` (with the number refused since the last line).
fn handshake_refused(side: &'static str, peer: SocketAddr, e: &quinn::ConnectionError) {
    if side == "incoming" && !is_tls_refusal(e) {
        debug!(%peer, error = %e, "quic handshake failed");
        return;
    }
    metrics::counter!("goim_quic_handshake_refused_total", "side" => side).increment(1);
    static SINCE_LOG: AtomicU64 = AtomicU64::new(0);
    static LAST_LOG: Mutex<Option<Instant>> = Mutex::new(None);
    let count = SINCE_LOG.fetch_add(1, Ordering::Relaxed) + 1;
    let Ok(mut last) = LAST_LOG.lock() else { return };
    if last.is_some_and(|t| t.elapsed() < REFUSED_LOG_EVERY) {
        return;
    }
    *last = Some(Instant::now());
    SINCE_LOG.store(0, Ordering::Relaxed);
    warn!(%peer, side, error = %e, refused = count, "QUIC handshake refused (certificate missing or not from the cluster CA?)");
}

async fn serve_connection(this: Arc<QuicEndpoint>, conn: Connection) {
    let peer = conn.remote_address();
    loop {
        let (send, mut recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(_) => return,
        };
        let this = this.clone();
        tokio::spawn(async move {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(SERVICE_BYTE_TIMEOUT, recv.read_exact(&mut byte)).await;
            if !matches!(read, Ok(Ok(()))) {
                metrics::counter!("goim_quic_rejected_total", "reason" => "no_service_byte").increment(1);
                return;
            }
            match Service::from_byte(byte[0]).and_then(|_| this.handler(byte[0])) {
                Some(handler) => handler.handle(BiStream { send, recv, peer }).await,
                None => {
                    metrics::counter!("goim_quic_rejected_total", "reason" => "unknown_service").increment(1);
                    warn!(%peer, service = byte[0], "stream for an unknown or unserved service");
                    let _ = recv.stop(1u32.into());
                }
            }
        });
    }
}

/// Serves a unary service: decodes one request frame, writes the handler's reply frame.
/// Undecodable requests are counted and the stream is reset.
pub async fn serve_unary<Req, Resp, F, Fut>(mut stream: BiStream, service: &'static str, f: F)
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Resp>,
{
    let req = match read_frame::<Req>(&mut stream.recv).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            metrics::counter!("goim_quic_bad_frames_total", "service" => service).increment(1);
            debug!(peer = %stream.peer, error = %e, service, "bad request frame");
            let _ = stream.send.reset(super::UNDECODABLE_REQUEST.into());
            return;
        }
    };
    let reply = f(req).await;
    if write_frame(&mut stream.send, &reply).await.is_ok() {
        let _ = stream.send.finish();
        let _ = stream.send.stopped().await;
    }
}
