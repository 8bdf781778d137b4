//! The WebSocket path: bytes off a client socket through tokio-tungstenite as the comet runs
//! it (server role, the comet's `WebSocketConfig` limits), each binary or text message then
//! through `packet::decode_ws_bytes`, as `WsSource` does.
//!
//! Input: one control byte (bit 0: start with the HTTP upgrade request, checked for path
//! `/sub`, else frames right away; bits 1-4: the read size, 0 for all at once; bit 7: a
//! 32-byte max body instead of goim's 4096), then the stream. Properties: no message exceeds
//! the configured size, and a decoded packet re-encodes to exactly its message.
#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use goim_net::packet::{decode_ws_bytes, DEFAULT_MAX_BODY, HEADER_LEN};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// As node/src/comet/ws.rs `check_path`: upgrades only on `/sub`.
#[allow(clippy::result_large_err)]
fn check_path(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() == "/sub" {
        return Ok(resp);
    }
    Err(ErrorResponse::new(Some("websocket path is /sub".into())))
}

/// A client socket: reads hand out the input `chunk` bytes at a time, then end of stream;
/// writes (the upgrade response, pongs, the close reply) are dropped.
struct FuzzIo {
    input: Vec<u8>,
    at: usize,
    chunk: usize,
}

impl AsyncRead for FuzzIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(self.input.len() - self.at).min(buf.remaining());
        let at = self.at;
        buf.put_slice(&self.input[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for FuzzIo {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a runtime"))
}

async fn serve(io: FuzzIo, handshake: bool, max_body: usize) {
    let config = goim_net::packet::server_ws_config(max_body, 0);
    let mut ws = if handshake {
        match tokio_tungstenite::accept_hdr_async_with_config(io, check_path, Some(config)).await {
            Ok(ws) => ws,
            Err(_) => return,
        }
    } else {
        WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
    };
    let max_message = HEADER_LEN + max_body;
    while let Some(Ok(message)) = ws.next().await {
        let data = match message {
            Message::Binary(data) => data,
            Message::Text(text) => Bytes::from(text),
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        assert!(data.len() <= max_message, "a {}-byte message got through", data.len());
        if let Ok(packet) = decode_ws_bytes(data.clone(), max_body) {
            assert_eq!(packet.to_bytes(), data, "re-encoding differs");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let handshake = ctl & 1 != 0;
    let chunk = match usize::from(ctl >> 1) & 0x0f {
        0 => usize::MAX,
        n => n,
    };
    let max_body = if ctl & 0x80 != 0 { 32 } else { DEFAULT_MAX_BODY };
    let io = FuzzIo { input: stream.to_vec(), at: 0, chunk };
    runtime().block_on(serve(io, handshake, max_body));
});
