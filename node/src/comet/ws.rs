//! WebSocket transport glue: serving an admitted connection (the upgrade on path `/sub`,
//! after the TLS handshake on the WSS listener), a packet source mapping one binary (or text) message to one packet, and a sink that
//! feeds every queued frame as a binary message and flushes once.
//!
//! Control frames are bounded: tungstenite answers every ping with a pong by itself, and
//! those pongs bypass the channel's outbound queue, so a client pinging without reading
//! would grow the write buffer without end. Each connection may send `ws_ping_rate`
//! control frames a second (burst: twice that); past it the connection is closed (1008,
//! "ping rate exceeded") and counted, and the write buffer is capped besides.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use goim_net::packet::{decode_ws_bytes, server_ws_config, Packet};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, error::ProtocolError, Message};
use tokio_tungstenite::WebSocketStream;

use super::admission::{Admitted, Refused};
use super::channel::Frame;
use super::transport::{FrameSink, PacketSource, ReadError};
use super::{conn, Comet};
use crate::rate::{Rate, TokenBucket};
use crate::tls::ClientTls;

/// The only path clients may upgrade on.
pub const WS_PATH: &str = "/sub";
/// What a connection closed for sending control frames too fast is told.
const PING_FLOOD: &str = "ping rate exceeded";

/// What a WebSocket runs over: a TCP stream, or TLS over one (WSS).
pub trait WsIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> WsIo for S {}

/// Upgrades an admitted connection (after a TLS handshake with `tls`, within the handshake
/// timeout), then serves it; its place in the comet's counts is given back when it ends.
/// The handshakes run in a task of their own, which hands the upgraded connection to a
/// new one made of `conn::serve` alone: a task keeps room for its largest state for as
/// long as it lives, and the handshakes' states (a TLS stream's, the HTTP upgrade's) made
/// every connection's task 3.8 KB instead of about 1.2 KB (heaptrack).
pub fn serve(
    comet: Arc<Comet>,
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    tls: Option<ClientTls>,
) {
    let deadline = Instant::now() + comet.config().handshake_timeout;
    let _ = stream.set_nodelay(true);
    tokio::spawn(async move {
        match tls {
            None => upgrade_then_serve(comet, stream, peer, deadline, admitted).await,
            Some(tls) => {
                let timeout = deadline.saturating_duration_since(Instant::now());
                if let Some(secured) = tls.accept(stream, "wss", timeout, comet.shutdown_token()).await {
                    upgrade_then_serve(comet, secured, peer, deadline, admitted).await;
                }
            }
        }
    });
}

/// What a refused WebSocket client reads instead of the upgrade: HTTP 503 (429 when rate
/// limited) with `{"error":"…"}`.
pub fn refusal(refused: Refused) -> Bytes {
    let status = if refused.is_rate() { "429 Too Many Requests" } else { "503 Service Unavailable" };
    let body = conn::error_body(refused.message());
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// The connection's task: `conn::serve` over the upgraded stream's two halves.
fn serve_upgraded<S: WsIo>(
    comet: Arc<Comet>,
    ws: WebSocketStream<S>,
    peer: SocketAddr,
    deadline: Instant,
    admitted: Admitted,
) -> impl Future<Output = ()> + Send {
    let (sink, stream) = ws.split();
    let close_reason = Arc::new(OnceLock::new());
    let ping_rate = comet.config().limits.ws_ping_rate;
    let source = WsSource {
        stream,
        max_body: comet.config().max_body,
        pings: TokenBucket::new(ping_rate, Instant::now()),
        ping_rate,
        close_reason: close_reason.clone(),
    };
    conn::serve(comet, peer, deadline, source, WsSink { sink, close_reason }, admitted)
}

/// The handshake task's last step: the HTTP upgrade, within the handshake deadline (which
/// the auth after it counts against too), then the connection's own task. A failed or
/// late upgrade, or a comet shutting down, ends here (and gives the place back).
async fn upgrade_then_serve<S: WsIo>(
    comet: Arc<Comet>,
    stream: S,
    peer: SocketAddr,
    deadline: Instant,
    admitted: Admitted,
) {
    let config = server_ws_config(comet.config().max_body, comet.config().max_out_frame);
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(stream, check_path, Some(config));
    let ws = tokio::select! {
        _ = comet.shutdown_token().cancelled() => return,
        upgraded = tokio::time::timeout_at(deadline, upgrade) => match upgraded {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "websocket upgrade failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "websocket upgrade timed out");
                return;
            }
        },
    };
    tokio::spawn(serve_upgraded(comet, ws, peer, deadline, admitted));
}

/// Refuses an upgrade on any path but `/sub` with 404.
#[allow(clippy::result_large_err, reason = "the callback signature is tungstenite's")]
fn check_path(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() == WS_PATH {
        return Ok(resp);
    }
    let mut refused = ErrorResponse::new(Some(format!("websocket path is {WS_PATH}")));
    *refused.status_mut() = StatusCode::NOT_FOUND;
    Err(refused)
}

pub struct WsSource<S> {
    stream: SplitStream<WebSocketStream<S>>,
    max_body: usize,
    /// Control frames (ping, pong) the client may still send.
    pings: TokenBucket,
    ping_rate: Rate,
    /// Set when the source ends the connection for a reason the close frame names.
    close_reason: Arc<OnceLock<CloseFrame>>,
}

impl<S> WsSource<S> {
    fn decode(&self, message: Bytes) -> Result<Option<Packet>, ReadError> {
        decode_ws_bytes(message, self.max_body).map(Some).map_err(|e| ReadError::Violation(e.to_string()))
    }
}

impl<S: WsIo> PacketSource for WsSource<S> {
    const TRANSPORT: &'static str = "ws";

    fn poll_packet(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Packet>, ReadError>> {
        loop {
            let message = match ready!(self.stream.poll_next_unpin(cx)) {
                None => return Poll::Ready(Ok(None)),
                Some(Ok(message)) => message,
                Some(Err(e)) => return Poll::Ready(read_error(e)),
            };
            match message {
                Message::Binary(data) => return Poll::Ready(self.decode(data)),
                Message::Text(text) => return Poll::Ready(self.decode(Bytes::from(text))),
                Message::Close(_) => return Poll::Ready(Ok(None)),
                Message::Ping(_) | Message::Pong(_) => {
                    if !self.pings.take(self.ping_rate, Instant::now()) {
                        let _ = self
                            .close_reason
                            .set(CloseFrame { code: CloseCode::Policy, reason: PING_FLOOD.into() });
                        return Poll::Ready(Err(ReadError::Flood(PING_FLOOD)));
                    }
                }
                Message::Frame(_) => {}
            }
        }
    }
}

/// A client hanging up is a clean end; broken framing, oversized or non-UTF-8 text
/// messages are protocol violations; the rest are transport failures.
fn read_error(err: tungstenite::Error) -> Result<Option<Packet>, ReadError> {
    use tungstenite::Error as E;
    match err {
        E::ConnectionClosed | E::AlreadyClosed | E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            Ok(None)
        }
        E::Protocol(_) | E::Capacity(_) | E::Utf8(_) => Err(ReadError::Violation(err.to_string())),
        other => Err(ReadError::Transport(other.to_string())),
    }
}

pub struct WsSink<S> {
    sink: SplitSink<WebSocketStream<S>, Message>,
    close_reason: Arc<OnceLock<CloseFrame>>,
}

/// A write error; a full write buffer (the client does not read) is a slow consumer.
fn write_error(e: tungstenite::Error) -> io::Error {
    if matches!(e, tungstenite::Error::WriteBufferFull(_)) {
        metrics::counter!("goim_comet_slow_consumer_total", "policy" => "write_buffer").increment(1);
        return io::Error::other("slow consumer: websocket write buffer full");
    }
    io::Error::other(e)
}

impl<S: WsIo> FrameSink for WsSink<S> {
    async fn write_frames(&mut self, frames: &mut VecDeque<Frame>) -> io::Result<()> {
        for frame in frames.drain(..) {
            self.sink.feed(Message::Binary(frame.ws_bytes())).await.map_err(write_error)?;
        }
        self.sink.flush().await.map_err(write_error)
    }

    /// A close frame naming why, when the connection is closed for a reason.
    async fn close(&mut self) {
        if let Some(reason) = self.close_reason.get() {
            let _ = self.sink.send(Message::Close(Some(reason.clone()))).await;
        }
        let _ = self.sink.close().await;
    }
}

#[cfg(test)]
mod tests {
    use crate::comet::admission::ClientLimits;
    use crate::comet::testkit::{auth, wait_until, Cluster, TestConfig};
    use crate::rate::Rate;
    use futures_util::{SinkExt, StreamExt};
    use goim_client::{Client, ClientError};
    use std::time::Duration;
    use tokio::net::TcpStream;
    use tokio::time::Instant;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::{self, protocol::frame::coding::CloseCode, Message};
    use tokio_tungstenite::WebSocketStream;

    #[tokio::test]
    async fn pings_past_the_rate_close_with_a_reason() {
        let limits = ClientLimits { ws_ping_rate: Rate::new(1, 4), ..ClientLimits::default() };
        let cluster = Cluster::start_with(TestConfig { limits, ..TestConfig::default() }).await;
        let (mut ws, _) = tokio_tungstenite::connect_async(cluster.ws()).await.unwrap();
        for i in 0..8u8 {
            ws.send(Message::Ping(vec![i].into())).await.unwrap();
        }
        let mut pongs = 0;
        let close = loop {
            match ws.next().await {
                Some(Ok(Message::Pong(_))) => pongs += 1,
                Some(Ok(Message::Close(frame))) => break frame,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert!((4..8).contains(&pongs), "pings within the burst are answered: {pongs}");
        let close = close.expect("a close frame with a reason");
        assert_eq!((close.code, close.reason.as_str()), (CloseCode::Policy, "ping rate exceeded"));
    }

    /// The place a connection takes at admission travels from the handshake's task to
    /// the connection's own and is given back when either ends.
    #[tokio::test]
    async fn a_websocket_keeps_its_place_from_upgrade_to_close() {
        let test = TestConfig { handshake_timeout: Duration::from_millis(800), ..TestConfig::default() };
        let cluster = Cluster::start_with(test).await;
        let admission = cluster.comet.admission();
        let mut served = cluster.client(true).await;
        served.auth(&auth(1, "live://1", &[])).await.unwrap();
        assert_eq!(admission.open(), 1);
        let silent = TcpStream::connect(cluster.comet.local_addrs().1).await.unwrap();
        wait_until(|| admission.open() == 2).await;
        // No upgrade within the handshake timeout: its place is given back, the served
        // client keeps its own and is still answered.
        wait_until(|| admission.open() == 1).await;
        assert_eq!(served.heartbeat().await.unwrap(), 1);
        served.close().await.unwrap();
        wait_until(|| admission.open() == 0).await;
        drop(silent);
    }

    /// What an idle WebSocket connection's task holds (its future's state) is its
    /// `conn::serve` alone: the upgrade and a TLS accept run in a task of their own.
    #[tokio::test]
    async fn idle_websocket_task_state_is_small() {
        let cluster = Cluster::start().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        let ws = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let admitted = cluster.comet.admission.admit(peer.ip()).expect("admitted");
        let task = super::serve_upgraded(cluster.comet.clone(), ws, peer, Instant::now(), admitted);
        let size = std::mem::size_of_val(&task);
        eprintln!("websocket connection task state {size} B");
        // With one future for the upgrade and the connection, plain or TLS, the task's
        // allocation was 3.84 KB (heaptrack, release build); now 1.15 KB.
        assert!(size <= 1_024, "websocket connection task state {size} B");
    }

    #[tokio::test]
    async fn upgrades_only_on_sub() {
        let cluster = Cluster::start().await;
        let url = format!("ws://{}/other", cluster.comet.local_addrs().1);
        match Client::connect_ws(&url).await {
            Err(ClientError::Ws(tungstenite::Error::Http(resp))) => {
                assert_eq!(resp.status(), 404)
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("upgraded on /other"),
        }
        assert!(Client::connect_ws(&cluster.ws()).await.is_ok());
    }
}
