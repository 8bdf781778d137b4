//! WebSocket transport glue: the accept loop with the upgrade on path `/sub`, a packet
//! source mapping one binary (or text) message to one packet, and a sink that feeds every
//! queued frame as a binary message and flushes once.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use goim_net::packet::{decode_ws_bytes, Packet, HEADER_LEN};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, error::ProtocolError, Message};
use tokio_tungstenite::WebSocketStream;

use super::channel::Frame;
use super::transport::{FrameSink, PacketSource, ReadError};
use super::{conn, Comet};

/// The only path clients may upgrade on.
pub const WS_PATH: &str = "/sub";
/// tungstenite allocates its read buffer eagerly: keep it small per connection.
const READ_BUFFER: usize = 4096;
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

type Ws = WebSocketStream<TcpStream>;

/// Accepts until shutdown; each connection upgrades and runs `conn::serve` in its own task.
pub async fn accept_loop(comet: Arc<Comet>, listener: TcpListener) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = comet.shutdown_token().cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "websocket accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        tokio::spawn(upgrade_and_serve(comet.clone(), stream, peer));
    }
}

/// The upgrade counts against the handshake timeout, like the auth that follows it.
async fn upgrade_and_serve(comet: Arc<Comet>, stream: TcpStream, peer: SocketAddr) {
    let deadline = Instant::now() + comet.config().handshake_timeout;
    let _ = stream.set_nodelay(true);
    let max_message = HEADER_LEN.saturating_add(comet.config().max_body);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
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
    let (sink, stream) = ws.split();
    let source = WsSource { stream, max_body: comet.config().max_body };
    conn::serve(comet, peer, deadline, source, WsSink(sink)).await;
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

pub struct WsSource {
    stream: SplitStream<Ws>,
    max_body: usize,
}

impl WsSource {
    fn decode(&self, message: Bytes) -> Result<Option<Packet>, ReadError> {
        decode_ws_bytes(message, self.max_body).map(Some).map_err(|e| ReadError::Violation(e.to_string()))
    }
}

impl PacketSource for WsSource {
    const TRANSPORT: &'static str = "ws";

    async fn next_packet(&mut self) -> Result<Option<Packet>, ReadError> {
        loop {
            let message = match self.stream.next().await {
                None => return Ok(None),
                Some(Ok(message)) => message,
                Some(Err(e)) => return read_error(e),
            };
            match message {
                Message::Binary(data) => return self.decode(data),
                Message::Text(text) => return self.decode(Bytes::from(text)),
                Message::Close(_) => return Ok(None),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
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

pub struct WsSink(pub SplitSink<Ws, Message>);

impl FrameSink for WsSink {
    async fn write_frames(&mut self, frames: VecDeque<Frame>) -> io::Result<()> {
        for frame in frames {
            self.0.feed(Message::Binary(frame.ws_bytes())).await.map_err(io::Error::other)?;
        }
        self.0.flush().await.map_err(io::Error::other)
    }

    async fn close(&mut self) {
        let _ = self.0.close().await;
    }
}

#[cfg(test)]
mod tests {
    use crate::comet::testkit::Cluster;
    use goim_net::client::{Client, ClientError};
    use tokio_tungstenite::tungstenite;

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
