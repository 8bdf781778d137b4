//! A goim v2 client over TCP or WebSocket, for integration tests, benchmarks and the
//! fault harness: it speaks the wire protocol exactly as goim's own clients do, and keeps
//! pushes that arrive while it waits for a reply so none is lost. `ResumingClient`
//! (in `resume`) wraps it with reconnection and room-offset recovery.

mod resume;

pub use resume::{extend_room_seq, is_room_push, Event, ResumeConfig, ResumingClient};

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, error::ProtocolError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::codec::Framed;

use goim_net::packet::{decode_ws_bytes, op, split_batch, Packet, PacketCodec, PacketError};

/// The largest body the client accepts: the server's op-9 batches can be large.
pub const CLIENT_MAX_BODY: usize = 1 << 20;
/// How long `auth`, `heartbeat` and `request` wait for their reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The op-7 auth body (docs/PROTOCOL.md §3.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthRequest {
    pub mid: i64,
    pub key: String,
    pub room_id: String,
    pub platform: String,
    pub accepts: Vec<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// **[ext]** The last room offset this client saw: the comet replays what came after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_seq: Option<u64>,
    /// **[ext]** The room epoch `room_seq` belongs to (from an earlier auth reply).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// The op-8 auth reply; goim sends an empty body, which parses as the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AuthReply {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub mid: i64,
    #[serde(default)]
    pub room_id: String,
    #[serde(default)]
    pub heartbeat: u64,
    /// The room offset the messages that follow continue from.
    #[serde(default)]
    pub room_seq: u64,
    #[serde(default)]
    pub epoch: String,
    #[serde(default)]
    pub recovered: bool,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("websocket error: {0}")]
    Ws(#[from] tungstenite::Error),
    #[error("protocol violation: {0}")]
    Packet(PacketError),
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("connection closed by the server")]
    Closed,
    #[error("timed out waiting for the server")]
    Timeout,
    #[error("auth rejected: {0}")]
    AuthRejected(String),
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    #[error("{0} needs a WebSocket connection")]
    NotWebSocket(&'static str),
    /// `ResumingClient` found no comet to connect to (logic unreachable, none known).
    #[error("no comet address known")]
    NoComet,
    /// `ResumingClient` could not (re)connect within its `give_up_after`.
    #[error("gave up reconnecting after {after:?}; last error: {last}")]
    GaveUp { after: Duration, last: String },
}

/// Socket failures surfaced by the TCP codec are I/O errors, not protocol violations.
impl From<PacketError> for ClientError {
    fn from(err: PacketError) -> Self {
        match err {
            PacketError::Io(io) => ClientError::Io(io),
            other => ClientError::Packet(other),
        }
    }
}

type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

enum Transport {
    Tcp(Box<Framed<TcpStream, PacketCodec>>),
    Ws(Box<WsStream>),
}

/// One goim connection.
pub struct Client {
    transport: Transport,
    /// Frames read while waiting for a reply, as the transport delivered them.
    held: VecDeque<Packet>,
    /// Inner packets of a batch that `recv` has started handing out.
    unbatched: VecDeque<Packet>,
    next_seq: i32,
}

impl Client {
    pub async fn connect_tcp(addr: &str) -> Result<Client, ClientError> {
        Client::over_tcp(TcpStream::connect(addr).await?)
    }

    /// A client on a TCP connection made elsewhere (e.g. from a chosen source address).
    pub fn over_tcp(stream: TcpStream) -> Result<Client, ClientError> {
        stream.set_nodelay(true)?;
        let framed = Framed::new(stream, PacketCodec::new(CLIENT_MAX_BODY));
        Ok(Client::over(Transport::Tcp(Box::new(framed))))
    }

    /// `url` like `ws://127.0.0.1:3102/sub`.
    pub async fn connect_ws(url: &str) -> Result<Client, ClientError> {
        let (ws, _response) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
        Ok(Client::over(Transport::Ws(Box::new(ws))))
    }

    fn over(transport: Transport) -> Client {
        Client { transport, held: VecDeque::new(), unbatched: VecDeque::new(), next_seq: 1 }
    }

    pub fn is_ws(&self) -> bool {
        matches!(self.transport, Transport::Ws(_))
    }

    /// Sends one packet (on WebSocket: one binary message).
    pub async fn send(&mut self, packet: &Packet) -> Result<(), ClientError> {
        match &mut self.transport {
            Transport::Tcp(framed) => framed.send(packet).await?,
            Transport::Ws(ws) => ws.send(Message::Binary(packet.to_bytes())).await?,
        }
        Ok(())
    }

    /// Sends bytes unchecked: on TCP straight onto the socket, on WebSocket as one binary
    /// message. For malformed-input and partial-packet tests.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let bytes = Bytes::copy_from_slice(bytes);
        match &mut self.transport {
            Transport::Tcp(framed) => framed.send(bytes).await?,
            Transport::Ws(ws) => ws.send(Message::Binary(bytes)).await?,
        }
        Ok(())
    }

    /// Sends a WebSocket text message (goim accepts packets in text frames too).
    pub async fn send_ws_text(&mut self, text: &str) -> Result<(), ClientError> {
        match &mut self.transport {
            Transport::Tcp(_) => Err(ClientError::NotWebSocket("send_ws_text")),
            Transport::Ws(ws) => Ok(ws.send(Message::text(text)).await?),
        }
    }

    /// The next packet as the transport delivered it: on WebSocket an op-9 batch is one
    /// op-9 packet; TCP delivers inner packets. Frames held while awaiting a reply come
    /// first, and so does the rest of a batch `recv` has started. `Ok(None)` when the
    /// server closed the connection (a close frame, or end of stream).
    pub async fn recv_frame(&mut self) -> Result<Option<Packet>, ClientError> {
        if let Some(packet) = self.unbatched.pop_front().or_else(|| self.held.pop_front()) {
            return Ok(Some(packet));
        }
        self.read_frame().await
    }

    /// The next application packet: op-9 batches are flattened into their inner packets,
    /// in order. Cancel-safe, so it can run under a timeout.
    pub async fn recv(&mut self) -> Result<Option<Packet>, ClientError> {
        loop {
            let Some(frame) = self.recv_frame().await? else {
                return Ok(None);
            };
            if frame.op != op::RAW {
                return Ok(Some(frame));
            }
            self.unbatched = split_batch(frame.body, CLIENT_MAX_BODY)?.into();
        }
    }

    /// `recv`, giving up with `Timeout` after `d`.
    pub async fn recv_timeout(&mut self, d: Duration) -> Result<Option<Packet>, ClientError> {
        tokio::time::timeout(d, self.recv()).await.map_err(|_| ClientError::Timeout)?
    }

    /// Sends op 7 and waits for op 8. An empty reply body (goim) is the default reply; a
    /// reply carrying `error` is `AuthRejected`.
    pub async fn auth(&mut self, req: &AuthRequest) -> Result<AuthReply, ClientError> {
        let seq = self.take_seq();
        let body = serde_json::to_vec(req)?;
        self.send(&Packet::new(op::AUTH, seq, body)).await?;
        let reply = self.await_reply(|p| p.op == op::AUTH_REPLY).await?;
        if reply.body.is_empty() {
            return Ok(AuthReply::default());
        }
        let reply: AuthReply = serde_json::from_slice(&reply.body)?;
        match reply.error {
            Some(error) => Err(ClientError::AuthRejected(error)),
            None => Ok(reply),
        }
    }

    /// Sends op 2 and waits for op 3 with the same seq, keeping pushes that arrive
    /// meanwhile for `recv`. Returns the online count (0 for an empty body).
    pub async fn heartbeat(&mut self) -> Result<i32, ClientError> {
        let seq = self.take_seq();
        self.send(&Packet::new(op::HEARTBEAT, seq, Bytes::new())).await?;
        let reply = self.await_reply(|p| p.op == op::HEARTBEAT_REPLY && p.seq == seq).await?;
        match <[u8; 4]>::try_from(reply.body.as_ref()) {
            Ok(count) => Ok(i32::from_be_bytes(count)),
            Err(_) if reply.body.is_empty() => Ok(0),
            Err(_) => Err(ClientError::Unexpected(format!(
                "heartbeat reply body of {} bytes, expected 4",
                reply.body.len()
            ))),
        }
    }

    /// Request/reply for ops 4, 12, 14 and 16: sends `op` with `body`, waits for `op + 1`
    /// with the same seq (keeping pushes for `recv`), returns the reply body.
    pub async fn request(&mut self, op: i32, body: impl Into<Bytes>) -> Result<Bytes, ClientError> {
        let seq = self.take_seq();
        self.send(&Packet::new(op, seq, body)).await?;
        let reply_op = op.wrapping_add(1);
        let reply = self.await_reply(|p| p.op == reply_op && p.seq == seq).await?;
        Ok(reply.body)
    }

    /// Sends a close (WebSocket close frame, or TCP write shutdown).
    pub async fn close(self) -> Result<(), ClientError> {
        match self.transport {
            Transport::Tcp(mut framed) => Ok(SinkExt::<Packet>::close(&mut framed).await?),
            Transport::Ws(mut ws) => match WsStream::close(&mut ws, None).await {
                Err(err) if is_ws_closed(&err) => Ok(()),
                other => Ok(other?),
            },
        }
    }

    fn take_seq(&mut self) -> i32 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        seq
    }

    /// Reads the transport until a frame `is_reply` matches, holding every other frame for
    /// `recv`; `Closed` if the server hangs up first, `Timeout` after `REPLY_TIMEOUT`.
    async fn await_reply(&mut self, is_reply: impl Fn(&Packet) -> bool) -> Result<Packet, ClientError> {
        let wait = async {
            loop {
                match self.read_frame().await? {
                    None => return Err(ClientError::Closed),
                    Some(frame) if is_reply(&frame) => return Ok(frame),
                    Some(frame) => self.held.push_back(frame),
                }
            }
        };
        tokio::time::timeout(REPLY_TIMEOUT, wait).await.map_err(|_| ClientError::Timeout)?
    }

    /// One frame straight from the transport.
    async fn read_frame(&mut self) -> Result<Option<Packet>, ClientError> {
        match &mut self.transport {
            Transport::Tcp(framed) => Ok(framed.next().await.transpose()?),
            Transport::Ws(ws) => loop {
                let message = match ws.next().await {
                    None => return Ok(None),
                    Some(Err(err)) if is_ws_closed(&err) => return Ok(None),
                    Some(message) => message?,
                };
                let data = match message {
                    Message::Binary(data) => data,
                    Message::Text(text) => Bytes::from(text),
                    Message::Close(_) => return Ok(None),
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                };
                return Ok(Some(decode_ws_bytes(data, CLIENT_MAX_BODY)?));
            },
        }
    }
}

/// The server ended the WebSocket, with or without a closing handshake.
fn is_ws_closed(err: &tungstenite::Error) -> bool {
    matches!(
        err,
        tungstenite::Error::ConnectionClosed
            | tungstenite::Error::AlreadyClosed
            | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use goim_net::packet::encode_batch;
    use tokio::net::TcpListener;

    /// Ops the test server treats as commands from the test.
    const PUSH_BATCH: i32 = 5000;
    const HANG_UP: i32 = 5001;
    const STAY_SILENT: i32 = 5002;
    const DROP_SOCKET: i32 = 5003;

    /// What the test server writes: TCP gets a batch as its inner packets (as goim does),
    /// WebSocket as one op-9 message.
    enum Out {
        Packet(Packet),
        Batch(Vec<Packet>),
        /// TCP: close the socket; WebSocket: close handshake.
        Close,
        /// Close the socket without a WebSocket close frame.
        Drop,
    }

    fn push(op: i32, body: &'static str) -> Packet {
        Packet::new(op, 0, body)
    }

    /// A scripted miniature of the comet's per-connection logic.
    fn respond(p: &Packet) -> Vec<Out> {
        match p.op {
            op::AUTH => {
                let req: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
                if req["token"] == "bad" {
                    let body = r#"{"error":"invalid token"}"#;
                    return vec![Out::Packet(p.reply(op::AUTH_REPLY, body)), Out::Close];
                }
                if req["platform"] == "goim" {
                    return vec![Out::Packet(p.reply(op::AUTH_REPLY, ""))];
                }
                let reply = serde_json::json!({
                    "key": "k1", "mid": req["mid"], "room_id": req["room_id"],
                    "heartbeat": 240, "room_seq": 3, "recovered": true,
                });
                let body = serde_json::to_vec(&reply).unwrap();
                vec![Out::Packet(p.reply(op::AUTH_REPLY, body))]
            }
            op::HEARTBEAT => vec![
                Out::Batch(vec![push(1000, "b1"), push(1000, "b2")]),
                Out::Packet(push(1001, "p3")),
                Out::Packet(Packet::new(op::HEARTBEAT_REPLY, p.seq.wrapping_add(1), "")),
                Out::Packet(p.reply(op::HEARTBEAT_REPLY, 5i32.to_be_bytes().to_vec())),
            ],
            op::SEND_MSG | op::CHANGE_ROOM | op::SUB | op::UNSUB => vec![
                Out::Packet(push(1000, "during")),
                Out::Packet(Packet::new(p.op + 1, p.seq.wrapping_add(7), "stale")),
                Out::Packet(p.reply(p.op + 1, p.body.clone())),
            ],
            PUSH_BATCH => vec![
                Out::Batch(vec![push(1000, "a"), push(1000, "b"), push(1000, "c")]),
                Out::Packet(push(1001, "d")),
            ],
            HANG_UP => vec![Out::Close],
            DROP_SOCKET => vec![Out::Drop],
            STAY_SILENT => vec![],
            _ => vec![Out::Packet(p.reply(p.op, ""))],
        }
    }

    async fn serve_tcp() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut framed = Framed::new(stream, PacketCodec::default());
                    while let Some(Ok(p)) = framed.next().await {
                        for out in respond(&p) {
                            match out {
                                Out::Packet(p) => framed.send(p).await.unwrap(),
                                Out::Batch(inner) => {
                                    for p in inner {
                                        framed.send(p).await.unwrap();
                                    }
                                }
                                Out::Close | Out::Drop => return,
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn serve_ws() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/sub", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                    while let Some(Ok(message)) = ws.next().await {
                        let data = match message {
                            Message::Binary(data) => data,
                            Message::Text(text) => Bytes::from(text),
                            _ => continue,
                        };
                        let p = decode_ws_bytes(data, CLIENT_MAX_BODY).unwrap();
                        for out in respond(&p) {
                            let data = match out {
                                Out::Packet(p) => p.to_bytes(),
                                Out::Batch(inner) => encode_batch(&inner),
                                Out::Close => {
                                    let _ = ws.close(None).await;
                                    return;
                                }
                                Out::Drop => return,
                            };
                            ws.send(Message::Binary(data)).await.unwrap();
                        }
                    }
                });
            }
        });
        url
    }

    async fn connect(ws: bool) -> Client {
        if ws {
            Client::connect_ws(&serve_ws().await).await.unwrap()
        } else {
            Client::connect_tcp(&serve_tcp().await).await.unwrap()
        }
    }

    fn auth_req() -> AuthRequest {
        AuthRequest {
            mid: 123,
            room_id: "live://1000".into(),
            platform: "web".into(),
            accepts: vec![1000, 1001],
            ..AuthRequest::default()
        }
    }

    fn bodies(packets: &[Packet]) -> Vec<&[u8]> {
        packets.iter().map(|p| p.body.as_ref()).collect()
    }

    async fn recv_n(client: &mut Client, n: usize) -> Vec<Packet> {
        let mut out = Vec::new();
        for _ in 0..n {
            let next = client.recv_timeout(Duration::from_secs(1)).await;
            out.push(next.unwrap().unwrap());
        }
        out
    }

    #[test]
    fn auth_request_serializes_like_the_protocol_example() {
        let json = serde_json::to_string(&auth_req()).unwrap();
        assert_eq!(
            json,
            r#"{"mid":123,"key":"","room_id":"live://1000","platform":"web","accepts":[1000,1001]}"#
        );
        let with_ext = AuthRequest { token: Some("t".into()), room_seq: Some(9), ..auth_req() };
        let json = serde_json::to_string(&with_ext).unwrap();
        assert!(json.ends_with(r#""token":"t","room_seq":9}"#), "{json}");
    }

    async fn auth_and_heartbeat(ws: bool) {
        let mut client = connect(ws).await;
        assert_eq!(client.is_ws(), ws);
        let reply = client.auth(&auth_req()).await.unwrap();
        assert_eq!(
            reply,
            AuthReply {
                key: "k1".into(),
                mid: 123,
                room_id: "live://1000".into(),
                heartbeat: 240,
                room_seq: 3,
                epoch: String::new(),
                recovered: true,
                error: None,
            }
        );
        assert_eq!(client.heartbeat().await.unwrap(), 5);
        // The pushes and the stale reply that arrived first are still delivered, in order.
        let got = recv_n(&mut client, 4).await;
        assert_eq!(bodies(&got), [&b"b1"[..], b"b2", b"p3", b""]);
        assert_eq!(got[3].op, op::HEARTBEAT_REPLY);
        client.close().await.unwrap();
    }

    #[tokio::test]
    async fn tcp_auth_and_heartbeat_keep_pushes() {
        auth_and_heartbeat(false).await;
    }

    #[tokio::test]
    async fn ws_auth_and_heartbeat_keep_pushes() {
        auth_and_heartbeat(true).await;
    }

    async fn requests_match_seq(ws: bool) {
        let mut client = connect(ws).await;
        for op in [op::SEND_MSG, op::CHANGE_ROOM, op::SUB, op::UNSUB] {
            let body = client.request(op, "live://2000").await.unwrap();
            assert_eq!(body, "live://2000");
        }
        let held = recv_n(&mut client, 8).await;
        assert_eq!(held[0].body, "during");
        assert_eq!(held[1].body, "stale");
        assert_eq!(held[7].op, op::UNSUB_REPLY);
    }

    #[tokio::test]
    async fn tcp_requests_match_seq() {
        requests_match_seq(false).await;
    }

    #[tokio::test]
    async fn ws_requests_match_seq() {
        requests_match_seq(true).await;
    }

    #[tokio::test]
    async fn ws_delivers_batches_as_op9_frames() {
        let mut client = connect(true).await;
        client.send(&Packet::new(PUSH_BATCH, 0, "")).await.unwrap();
        let batch = client.recv_frame().await.unwrap().unwrap();
        assert_eq!((batch.op, batch.seq), (op::RAW, 0));
        let inner = split_batch(batch.body, CLIENT_MAX_BODY).unwrap();
        assert_eq!(bodies(&inner), [&b"a"[..], b"b", b"c"]);
        assert_eq!(client.recv_frame().await.unwrap().unwrap().body, "d");
    }

    #[tokio::test]
    async fn recv_flattens_batches_in_order() {
        for ws in [false, true] {
            let mut client = connect(ws).await;
            client.send(&Packet::new(PUSH_BATCH, 0, "")).await.unwrap();
            client.send(&Packet::new(PUSH_BATCH, 0, "")).await.unwrap();
            let got = recv_n(&mut client, 8).await;
            let expected = [&b"a"[..], b"b", b"c", b"d"].repeat(2);
            assert_eq!(bodies(&got), expected, "ws={ws}");
        }
    }

    #[tokio::test]
    async fn recv_frame_continues_a_batch_recv_started() {
        let mut client = connect(true).await;
        client.send(&Packet::new(PUSH_BATCH, 0, "")).await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap().body, "a");
        assert_eq!(client.recv_frame().await.unwrap().unwrap().body, "b");
        assert_eq!(client.recv().await.unwrap().unwrap().body, "c");
        assert_eq!(client.recv_frame().await.unwrap().unwrap().body, "d");
    }

    #[tokio::test]
    async fn goim_empty_auth_reply_is_the_default() {
        for ws in [false, true] {
            let mut client = connect(ws).await;
            let req = AuthRequest { platform: "goim".into(), ..auth_req() };
            assert_eq!(client.auth(&req).await.unwrap(), AuthReply::default());
        }
    }

    #[tokio::test]
    async fn rejected_auth_then_server_close() {
        for ws in [false, true] {
            let mut client = connect(ws).await;
            let req = AuthRequest { token: Some("bad".into()), ..auth_req() };
            let err = client.auth(&req).await.unwrap_err();
            assert!(matches!(&err, ClientError::AuthRejected(e) if e == "invalid token"), "{err}");
            assert!(client.recv().await.unwrap().is_none(), "ws={ws}");
        }
    }

    #[tokio::test]
    async fn server_hang_up_is_a_clean_close() {
        for (ws, how) in [(false, HANG_UP), (true, HANG_UP), (true, DROP_SOCKET)] {
            let mut client = connect(ws).await;
            client.send(&Packet::new(how, 0, "")).await.unwrap();
            assert!(client.recv().await.unwrap().is_none(), "ws={ws} op={how}");
        }
    }

    #[tokio::test]
    async fn waiting_for_a_reply_on_a_closed_connection_is_closed() {
        let mut client = connect(false).await;
        client.send(&Packet::new(HANG_UP, 0, "")).await.unwrap();
        let err = client.request(op::SUB, "1000").await.unwrap_err();
        assert!(matches!(err, ClientError::Closed | ClientError::Io(_)), "{err}");
    }

    #[tokio::test]
    async fn recv_timeout_times_out() {
        let mut client = connect(false).await;
        client.send(&Packet::new(STAY_SILENT, 0, "")).await.unwrap();
        let err = client.recv_timeout(Duration::from_millis(50)).await.unwrap_err();
        assert!(matches!(err, ClientError::Timeout));
    }

    #[tokio::test]
    async fn raw_bytes_may_split_a_packet() {
        for ws in [false, true] {
            let mut client = connect(ws).await;
            let wire = Packet::new(op::SUB, 9, "1000").to_bytes();
            if ws {
                client.send_raw(&wire).await.unwrap();
            } else {
                client.send_raw(&wire[..10]).await.unwrap();
                client.send_raw(&wire[10..]).await.unwrap();
            }
            let got = recv_n(&mut client, 3).await;
            assert_eq!(got[2], Packet::new(op::SUB_REPLY, 9, "1000"), "ws={ws}");
        }
    }

    #[tokio::test]
    async fn ws_text_frames_carry_packets() {
        let mut client = connect(true).await;
        let wire = Packet::new(op::HEARTBEAT, 1, "").to_bytes();
        let text = std::str::from_utf8(&wire).unwrap();
        client.send_ws_text(text).await.unwrap();
        let got = recv_n(&mut client, 5).await;
        assert_eq!(got[4].op, op::HEARTBEAT_REPLY);
        assert_eq!(got[4].body.as_ref(), 5i32.to_be_bytes());
    }

    #[tokio::test]
    async fn ws_text_is_refused_on_tcp() {
        let mut client = connect(false).await;
        let err = client.send_ws_text("x").await.unwrap_err();
        assert!(matches!(err, ClientError::NotWebSocket(_)));
    }

    #[tokio::test]
    async fn malformed_server_frame_is_a_packet_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut bad = Packet::new(1000, 0, "x").to_bytes().to_vec();
            bad[5] = 12;
            tokio::io::AsyncWriteExt::write_all(&mut stream, &bad).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let mut client = Client::connect_tcp(&addr).await.unwrap();
        let err = client.recv().await.unwrap_err();
        assert!(matches!(err, ClientError::Packet(PacketError::HeaderLen(12))), "{err}");
    }
}
