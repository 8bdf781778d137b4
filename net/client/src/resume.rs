//! A goim client that survives comet loss: on any disconnect it asks logic where to go
//! (`/goim/nodes/weighted`), reconnects with jittered exponential backoff and re-auths with
//! the same key plus the last room offset and epoch it saw, so the comet can replay what
//! it missed. Integration tests, the benchmark and the fault harness use it to observe
//! recovery exactly as a real client would, duplicates and gaps included.

use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use serde::Deserialize;
use tokio::time::{sleep_until, Instant, Interval, MissedTickBehavior};

use super::{AuthReply, AuthRequest, Client, ClientError};
use goim_net::packet::{op, Packet};

/// How a `ResumingClient` finds comets and paces its retries.
#[derive(Debug, Clone)]
pub struct ResumeConfig {
    /// Logic HTTP addresses (`host:port`), tried in turn for `/goim/nodes/weighted`.
    pub logic_http: Vec<String>,
    /// WebSocket (`ws://{ws}/sub`) rather than TCP.
    pub ws: bool,
    /// The first auth, sent as given; reconnects reuse it with the key, room offset and
    /// epoch from the latest auth reply.
    pub auth: AuthRequest,
    /// Pins the comet (`host:port` of the chosen transport) used until the first auth
    /// succeeds; `None` asks logic.
    pub first_comet: Option<String>,
    /// Backoff between attempts doubles from `backoff_min` to `backoff_max`; each sleep is
    /// jittered to between half and all of it. It resets after a successful auth.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Total outage after which `connect` / `recv` return `GaveUp`.
    pub give_up_after: Duration,
    /// Upper bound on the heartbeat period (the auth reply's `heartbeat` is used when
    /// shorter). A connection silent for three periods is treated as lost.
    pub heartbeat_cap: Duration,
    /// Bound on one attempt: node lookup, connect and auth.
    pub attempt_timeout: Duration,
}

impl ResumeConfig {
    /// Defaults: TCP, backoff 100 ms .. 5 s, give up after 60 s, heartbeat at most every
    /// 30 s, attempts bounded at 5 s.
    pub fn new(logic_http: Vec<String>, auth: AuthRequest) -> ResumeConfig {
        ResumeConfig {
            logic_http,
            ws: false,
            auth,
            first_comet: None,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            give_up_after: Duration::from_secs(60),
            heartbeat_cap: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for ResumeConfig {
    fn default() -> Self {
        ResumeConfig::new(Vec::new(), AuthRequest::default())
    }
}

/// What `ResumingClient::recv` yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A packet from the comet, exactly as received (op-9 batches flattened); heartbeat
    /// replies are swallowed.
    Message(Packet),
    /// A successful auth: after the first connect and after every reconnect.
    Connected(AuthReply),
}

/// Ops the comet uses to answer this client's own requests; their seq is ours, not a room
/// offset. (An unknown op is echoed with its own op: don't `send` unknown ops with a
/// nonzero seq if room tracking matters.)
const REPLY_OPS: [i32; 7] = [
    op::HANDSHAKE_REPLY,
    op::HEARTBEAT_REPLY,
    op::SEND_MSG_REPLY,
    op::AUTH_REPLY,
    op::CHANGE_ROOM_REPLY,
    op::SUB_REPLY,
    op::UNSUB_REPLY,
];

/// Whether `packet` is a room push whose header seq carries the room offset.
pub fn is_room_push(packet: &Packet) -> bool {
    packet.seq != 0 && !REPLY_OPS.contains(&packet.op)
}

/// The u64 offset whose low 32 bits are `low` and which is closest to `current` (the
/// header carries the offset truncated to 32 bits, so it wraps every 2^32 messages). A
/// candidate exactly 2^31 away either side resolves backwards.
pub fn extend_room_seq(current: u64, low: u32) -> u64 {
    let diff = i64::from(low.wrapping_sub(current as u32) as i32);
    match current.checked_add_signed(diff) {
        Some(seq) => seq,
        // Below zero: the closest non-negative candidate has no high bits.
        None if diff < 0 => u64::from(low),
        // Past u64::MAX: stay in the current 2^32 window.
        None => (current & !0xffff_ffff) | u64::from(low),
    }
}

/// Our next request seq: positive, skipping 0 on wrap.
fn take_seq(next: &mut i32) -> i32 {
    let seq = *next;
    *next = next.wrapping_add(1).max(1);
    seq
}

/// The `/goim/nodes/weighted` answer, as much of it as we use.
#[derive(Debug, Deserialize)]
struct NodesReply {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
    data: Option<NodesData>,
}

#[derive(Debug, Deserialize)]
struct NodesData {
    #[serde(default)]
    addrs: Vec<NodeAddr>,
}

#[derive(Debug, Deserialize)]
struct NodeAddr {
    #[serde(default)]
    tcp: String,
    #[serde(default)]
    ws: String,
}

/// The live connection and its liveness bookkeeping.
struct Live {
    client: Client,
    heartbeat: Interval,
    period: Duration,
    last_read: Instant,
}

/// What one turn of the receive loop saw.
enum Turn {
    Packet(Packet),
    Heartbeat,
    Lost(String),
}

/// A goim client that reconnects and resumes its room on its own; see the module doc.
///
/// `connect` returns after the first successful auth; that auth's `Event::Connected` is
/// still the first thing `recv` yields (and `last_auth` has it already). Every method is
/// cancel-safe: `recv` may run under a timeout, and a cancelled reconnect picks up where
/// it left off.
pub struct ResumingClient {
    cfg: ResumeConfig,
    http: reqwest::Client,
    conn: Option<Live>,
    /// The `Connected` event `recv` owes the caller.
    pending: Option<AuthReply>,
    last_auth: Option<AuthReply>,
    key: String,
    room_seq: u64,
    epoch: String,
    comet: String,
    /// Comet addresses (of our transport) from the last non-empty node list.
    known: Vec<String>,
    /// The logic address to ask first: the last one that answered.
    logic_first: usize,
    reconnects: u64,
    backoff: Duration,
    outage_since: Option<Instant>,
    retry_at: Option<Instant>,
    last_failed: Option<String>,
    last_error: String,
    next_seq: i32,
}

impl ResumingClient {
    /// Connects (retrying with backoff up to `give_up_after`) and authenticates.
    pub async fn connect(cfg: ResumeConfig) -> Result<ResumingClient, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.attempt_timeout)
            .build()
            .map_err(|err| ClientError::Unexpected(format!("http client: {err}")))?;
        let mut client = ResumingClient {
            key: cfg.auth.key.clone(),
            known: cfg.first_comet.iter().cloned().collect(),
            backoff: cfg.backoff_min,
            cfg,
            http,
            conn: None,
            pending: None,
            last_auth: None,
            room_seq: 0,
            epoch: String::new(),
            comet: String::new(),
            logic_first: 0,
            reconnects: 0,
            outage_since: None,
            retry_at: None,
            last_failed: None,
            last_error: String::new(),
            next_seq: 1,
        };
        client.reconnect().await?;
        Ok(client)
    }

    /// The next event. On connection loss (close, error, or three heartbeat periods of
    /// silence) it reconnects and yields `Connected`; `GaveUp` once the outage has lasted
    /// `give_up_after` (a later call starts a fresh outage).
    pub async fn recv(&mut self) -> Result<Event, ClientError> {
        loop {
            if let Some(reply) = self.pending.take() {
                return Ok(Event::Connected(reply));
            }
            let Some(live) = self.conn.as_mut() else {
                self.reconnect().await?;
                continue;
            };
            let dead_at = live.last_read + live.period * 3;
            let turn = tokio::select! {
                read = live.client.recv() => match read {
                    Ok(Some(packet)) => Turn::Packet(packet),
                    Ok(None) => Turn::Lost("closed by the comet".into()),
                    Err(err) => Turn::Lost(err.to_string()),
                },
                _ = live.heartbeat.tick() => Turn::Heartbeat,
                _ = sleep_until(dead_at) => Turn::Lost("no data for three heartbeat periods".into()),
            };
            match turn {
                Turn::Packet(packet) => {
                    live.last_read = Instant::now();
                    if packet.op == op::HEARTBEAT_REPLY {
                        continue;
                    }
                    if is_room_push(&packet) {
                        let seq = extend_room_seq(self.room_seq, packet.seq as u32);
                        self.room_seq = self.room_seq.max(seq);
                    }
                    return Ok(Event::Message(packet));
                }
                Turn::Heartbeat => {
                    let seq = take_seq(&mut self.next_seq);
                    let ping = Packet::new(op::HEARTBEAT, seq, Bytes::new());
                    if let Err(err) = live.client.send(&ping).await {
                        self.lost(err.to_string());
                    }
                }
                Turn::Lost(why) => self.lost(why),
            }
        }
    }

    /// Sends `op` with `body` on the current connection and returns the seq used; the
    /// reply, if any, arrives through `recv`. Fails with `Closed` while disconnected (and
    /// a failed send counts as connection loss: the next `recv` reconnects).
    pub async fn send(&mut self, op: i32, body: impl Into<Bytes>) -> Result<i32, ClientError> {
        let seq = take_seq(&mut self.next_seq);
        let Some(live) = self.conn.as_mut() else {
            return Err(ClientError::Closed);
        };
        match live.client.send(&Packet::new(op, seq, body)).await {
            Ok(()) => Ok(seq),
            Err(err) => {
                self.lost(err.to_string());
                Err(err)
            }
        }
    }

    /// The room offset the client has seen up to (from auth replies and room pushes).
    pub fn room_seq(&self) -> u64 {
        self.room_seq
    }

    /// The room epoch from the latest auth reply.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The connection key (generated by the comet on the first auth unless given).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The comet address (`host:port`) of the current or latest connection.
    pub fn comet(&self) -> &str {
        &self.comet
    }

    /// Successful reconnects (the first connect not counted).
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// The latest auth reply.
    pub fn last_auth(&self) -> Option<&AuthReply> {
        self.last_auth.as_ref()
    }

    /// Whether a connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Closes the current connection, if any.
    pub async fn close(mut self) {
        if let Some(live) = self.conn.take() {
            let _ = live.client.close().await;
        }
    }

    /// Drops the connection and schedules the first reconnect attempt after one backoff.
    fn lost(&mut self, why: String) {
        tracing::debug!(comet = %self.comet, %why, "connection lost");
        self.conn = None;
        self.last_failed = Some(self.comet.clone());
        self.last_error = why;
        self.outage_since = Some(Instant::now());
        self.schedule_retry();
    }

    fn schedule_retry(&mut self) {
        let half = self.backoff / 2;
        let jitter = rand::rng().random_range(Duration::ZERO..=half);
        self.retry_at = Some(Instant::now() + half + jitter);
        self.backoff = (self.backoff * 2).min(self.cfg.backoff_max).max(self.cfg.backoff_min);
    }

    /// Attempts until one auth succeeds or the outage reaches `give_up_after`.
    async fn reconnect(&mut self) -> Result<(), ClientError> {
        let since = *self.outage_since.get_or_insert_with(Instant::now);
        let deadline = since + self.cfg.give_up_after;
        loop {
            if let Some(at) = self.retry_at {
                sleep_until(at.min(deadline)).await;
            }
            let now = Instant::now();
            if now >= deadline {
                self.outage_since = None;
                self.retry_at = None;
                let last = std::mem::take(&mut self.last_error);
                return Err(ClientError::GaveUp { after: self.cfg.give_up_after, last });
            }
            let limit = self.cfg.attempt_timeout.min(deadline - now);
            let (addr, result) = match tokio::time::timeout(limit, self.attempt()).await {
                Ok(done) => done,
                Err(_) => (None, Err(ClientError::Timeout)),
            };
            match result {
                Ok((client, reply)) => {
                    self.connected(addr.unwrap_or_default(), client, reply);
                    return Ok(());
                }
                Err(err) => {
                    tracing::debug!(comet = ?addr, %err, "reconnect attempt failed");
                    if addr.is_some() {
                        self.last_failed = addr;
                    }
                    self.last_error = err.to_string();
                    self.schedule_retry();
                }
            }
        }
    }

    /// One attempt: choose a comet, connect, auth. Returns the comet tried, if any.
    async fn attempt(&mut self) -> (Option<String>, Result<(Client, AuthReply), ClientError>) {
        let addr = match self.pick_comet().await {
            Some(addr) => addr,
            None => return (None, Err(ClientError::NoComet)),
        };
        let req = self.auth_request();
        let ws = self.cfg.ws;
        let result = async {
            let mut client = if ws {
                Client::connect_ws(&format!("ws://{addr}/sub")).await?
            } else {
                Client::connect_tcp(&addr).await?
            };
            let reply = client.auth(&req).await?;
            Ok((client, reply))
        }
        .await;
        (Some(addr), result)
    }

    fn connected(&mut self, addr: String, client: Client, reply: AuthReply) {
        if self.last_auth.is_some() {
            self.reconnects += 1;
        }
        if !reply.key.is_empty() {
            self.key = reply.key.clone();
        }
        self.room_seq = reply.room_seq;
        self.epoch = reply.epoch.clone();
        self.comet = addr;
        let hb = match reply.heartbeat {
            0 => self.cfg.heartbeat_cap,
            secs => Duration::from_secs(secs).min(self.cfg.heartbeat_cap),
        };
        let period = hb.max(Duration::from_millis(1));
        let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.conn = Some(Live { client, heartbeat, period, last_read: Instant::now() });
        self.last_auth = Some(reply.clone());
        self.pending = Some(reply);
        self.backoff = self.cfg.backoff_min;
        self.outage_since = None;
        self.retry_at = None;
        self.last_failed = None;
        self.last_error.clear();
    }

    /// The first auth is `cfg.auth` as given; later ones resume with what we learned.
    fn auth_request(&self) -> AuthRequest {
        if self.last_auth.is_none() {
            return self.cfg.auth.clone();
        }
        AuthRequest {
            key: self.key.clone(),
            room_seq: Some(self.room_seq),
            epoch: (!self.epoch.is_empty()).then(|| self.epoch.clone()),
            ..self.cfg.auth.clone()
        }
    }

    /// The pinned first comet, else the first listed comet other than the one that just
    /// failed (logic lists least loaded first), from logic or from the last list we got.
    async fn pick_comet(&mut self) -> Option<String> {
        if self.last_auth.is_none() {
            if let Some(first) = &self.cfg.first_comet {
                return Some(first.clone());
            }
        }
        if let Some(fresh) = self.fetch_comets().await {
            if !fresh.is_empty() {
                self.known = fresh;
            }
        }
        let failed = self.last_failed.as_deref();
        self.known.iter().find(|a| Some(a.as_str()) != failed).or(self.known.first()).cloned()
    }

    /// Asks each logic address in turn, starting with the last that answered.
    async fn fetch_comets(&mut self) -> Option<Vec<String>> {
        let n = self.cfg.logic_http.len();
        for i in 0..n {
            let idx = (self.logic_first + i) % n;
            let url = format!("http://{}/goim/nodes/weighted", self.cfg.logic_http[idx]);
            match self.fetch_one(&url).await {
                Ok(addrs) => {
                    self.logic_first = idx;
                    return Some(addrs);
                }
                Err(err) => tracing::debug!(%url, %err, "node list unavailable"),
            }
        }
        None
    }

    async fn fetch_one(&self, url: &str) -> Result<Vec<String>, String> {
        let response = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        let reply: NodesReply = response.json().await.map_err(|e| e.to_string())?;
        if reply.code != 0 {
            return Err(format!("code {}: {}", reply.code, reply.message));
        }
        let addrs = reply.data.map(|d| d.addrs).unwrap_or_default();
        let ws = self.cfg.ws;
        Ok(addrs.into_iter().map(|a| if ws { a.ws } else { a.tcp }).filter(|a| !a.is_empty()).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use futures_util::{SinkExt, StreamExt};
    use serde_json::{json, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_util::codec::Framed;

    use super::*;
    use goim_net::packet::{decode_ws_bytes, PacketCodec};

    const WAIT: Duration = Duration::from_secs(1);

    #[test]
    fn room_seq_extends_across_32_bit_wrap() {
        assert_eq!(extend_room_seq(0, 5), 5);
        assert_eq!(extend_room_seq(10, 8), 8);
        assert_eq!(extend_room_seq(0xffff_fff0, 0x10), 0x1_0000_0010);
        assert_eq!(extend_room_seq(0x1_0000_0005, 0xffff_fffe), 0xffff_fffe);
        assert_eq!(extend_room_seq(0x7_0000_0000, 0x7fff_ffff), 0x7_7fff_ffff);
        assert_eq!(extend_room_seq(0x7_0000_0000, 0x8000_0001), 0x6_8000_0001);
        // No negative offsets: the closest candidate is the low bits alone.
        assert_eq!(extend_room_seq(3, 0xffff_ffff), 0xffff_ffff);
        assert_eq!(extend_room_seq(u64::MAX - 1, 2), 0xffff_ffff_0000_0002);
        // The header carries `room_seq as u32 as i32`: negative i32s are high offsets.
        let wire = 0x2_9000_0000u64 as u32 as i32;
        assert!(wire < 0);
        assert_eq!(extend_room_seq(0x2_8fff_fff0, wire as u32), 0x2_9000_0000);
    }

    #[test]
    fn only_nonzero_non_reply_packets_are_room_pushes() {
        assert!(is_room_push(&Packet::new(1000, 7, "")));
        assert!(is_room_push(&Packet::new(1000, -7, "")));
        assert!(!is_room_push(&Packet::new(1000, 0, "")));
        for reply in REPLY_OPS {
            assert!(!is_room_push(&Packet::new(reply, 7, "")), "op {reply}");
        }
    }

    /// What a fake comet does with one connection, chosen by its index.
    #[derive(Clone)]
    struct Script {
        /// `None`: refuse the auth and close.
        reply: Option<Value>,
        /// Sent right after the auth reply.
        pushes: Vec<Packet>,
        /// Close after the pushes.
        hang_up: bool,
        /// Answer heartbeats (with a count of 7).
        answer_heartbeats: bool,
    }

    impl Script {
        fn accept(reply: Value) -> Script {
            Script { reply: Some(reply), pushes: Vec::new(), hang_up: false, answer_heartbeats: true }
        }
    }

    struct FakeComet {
        addr: String,
        /// Every auth body received, in order.
        auths: mpsc::UnboundedReceiver<Value>,
        heartbeats: Arc<AtomicUsize>,
    }

    /// One accepted connection, TCP or WebSocket, speaking packets.
    enum Conn {
        Tcp(Box<Framed<TcpStream, PacketCodec>>),
        Ws(Box<tokio_tungstenite::WebSocketStream<TcpStream>>),
    }

    impl Conn {
        async fn next(&mut self) -> Option<Packet> {
            match self {
                Conn::Tcp(framed) => framed.next().await?.ok(),
                Conn::Ws(ws) => loop {
                    match ws.next().await?.ok()? {
                        Message::Binary(data) => return decode_ws_bytes(data, 1 << 16).ok(),
                        Message::Close(_) => return None,
                        _ => continue,
                    }
                },
            }
        }

        async fn send(&mut self, p: Packet) {
            let _ = match self {
                Conn::Tcp(framed) => framed.send(p).await.map_err(|_| ()),
                Conn::Ws(ws) => ws.send(Message::Binary(p.to_bytes())).await.map_err(|_| ()),
            };
        }
    }

    async fn fake_comet(ws: bool, script: impl Fn(usize) -> Script + Send + Sync + 'static) -> FakeComet {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (auth_tx, auths) = mpsc::unbounded_channel();
        let heartbeats = Arc::new(AtomicUsize::new(0));
        let counter = heartbeats.clone();
        let script = Arc::new(script);
        tokio::spawn(async move {
            let mut index = 0;
            while let Ok((stream, _)) = listener.accept().await {
                let script = script(index);
                index += 1;
                let auth_tx = auth_tx.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut conn = if ws {
                        Conn::Ws(Box::new(tokio_tungstenite::accept_async(stream).await.unwrap()))
                    } else {
                        Conn::Tcp(Box::new(Framed::new(stream, PacketCodec::default())))
                    };
                    while let Some(p) = conn.next().await {
                        match p.op {
                            op::AUTH => {
                                let req: Value = serde_json::from_slice(&p.body).unwrap();
                                let _ = auth_tx.send(req);
                                let Some(reply) = &script.reply else {
                                    let body = r#"{"error":"room moving"}"#;
                                    conn.send(p.reply(op::AUTH_REPLY, body)).await;
                                    return;
                                };
                                conn.send(p.reply(op::AUTH_REPLY, reply.to_string())).await;
                                for push in &script.pushes {
                                    conn.send(push.clone()).await;
                                }
                                if script.hang_up {
                                    return;
                                }
                            }
                            op::HEARTBEAT => {
                                counter.fetch_add(1, Ordering::SeqCst);
                                if script.answer_heartbeats {
                                    conn.send(p.reply(op::HEARTBEAT_REPLY, 7i32.to_be_bytes().to_vec()))
                                        .await;
                                }
                            }
                            _ => conn.send(p.reply(p.op + 1, p.body.clone())).await,
                        }
                    }
                });
            }
        });
        FakeComet { addr, auths, heartbeats }
    }

    /// A minimal logic: answers every request with `/goim/nodes/weighted` listing `comets`.
    async fn fake_logic(comets: &[&FakeComet]) -> String {
        let addrs: Vec<Value> = comets
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"id": format!("comet-{i}"), "tcp": c.addr, "ws": c.addr, "weight": 1}))
            .collect();
        let body = json!({"code": 0, "message": "", "data": {"heartbeat": 240, "addrs": addrs}}).to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    assert!(request.starts_with(b"GET /goim/nodes/weighted "));
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        addr
    }

    /// An address nobody listens on.
    async fn dead_addr() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().to_string()
    }

    fn config(logic: Vec<String>, first: &FakeComet, ws: bool) -> ResumeConfig {
        let auth = AuthRequest {
            mid: 42,
            room_id: "live://1000".into(),
            platform: "test".into(),
            accepts: vec![1000],
            ..AuthRequest::default()
        };
        ResumeConfig {
            ws,
            first_comet: Some(first.addr.clone()),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            give_up_after: Duration::from_secs(1),
            ..ResumeConfig::new(logic, auth)
        }
    }

    fn reply(key: &str, room_seq: u64, epoch: &str, recovered: bool) -> Value {
        json!({"key": key, "mid": 42, "room_id": "live://1000", "heartbeat": 240,
               "room_seq": room_seq, "epoch": epoch, "recovered": recovered})
    }

    async fn next(client: &mut ResumingClient) -> Event {
        tokio::time::timeout(WAIT, client.recv()).await.expect("event in time").unwrap()
    }

    async fn next_message(client: &mut ResumingClient) -> Packet {
        match next(client).await {
            Event::Message(p) => p,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    async fn next_connected(client: &mut ResumingClient) -> AuthReply {
        match next(client).await {
            Event::Connected(reply) => reply,
            other => panic!("expected Connected, got {other:?}"),
        }
    }

    async fn next_auth(comet: &mut FakeComet) -> Value {
        tokio::time::timeout(WAIT, comet.auths.recv()).await.unwrap().unwrap()
    }

    async fn reconnects_to_the_other_comet(ws: bool) {
        let mut a = fake_comet(ws, |_| Script {
            pushes: vec![
                Packet::new(1000, 11, "r11"),
                Packet::new(op::SEND_MSG_REPLY, 99, "{}"),
                Packet::new(1000, 0, "key push"),
                Packet::new(1000, 12, "r12"),
            ],
            hang_up: true,
            ..Script::accept(reply("gen-1", 10, "e1", false))
        })
        .await;
        let mut b = fake_comet(ws, |_| Script {
            pushes: vec![Packet::new(1000, 13, "r13")],
            ..Script::accept(reply("gen-1", 12, "e1", true))
        })
        .await;
        // Logic lists the failed comet first: the client must still prefer the other one.
        let logic = fake_logic(&[&a, &b]).await;
        let mut client = ResumingClient::connect(config(vec![logic], &a, ws)).await.unwrap();
        assert_eq!(client.comet(), a.addr);

        let first = next_auth(&mut a).await;
        assert_eq!(first["key"], "");
        assert_eq!(first["mid"], 42);
        assert!(first.get("room_seq").is_none() && first.get("epoch").is_none(), "{first}");
        let connected = next_connected(&mut client).await;
        assert_eq!((connected.room_seq, connected.recovered), (10, false));

        let got: Vec<Packet> = [
            next_message(&mut client).await,
            next_message(&mut client).await,
            next_message(&mut client).await,
            next_message(&mut client).await,
        ]
        .into();
        let bodies: Vec<&[u8]> = got.iter().map(|p| p.body.as_ref()).collect();
        assert_eq!(bodies, [&b"r11"[..], b"{}", b"key push", b"r12"]);
        assert_eq!(client.room_seq(), 12, "the reply's seq 99 is not a room offset");
        assert_eq!((client.key(), client.epoch()), ("gen-1", "e1"));

        let reconnected = next_connected(&mut client).await;
        assert!(reconnected.recovered);
        assert_eq!(client.comet(), b.addr);
        assert_eq!(client.reconnects(), 1);
        let resumed = next_auth(&mut b).await;
        assert_eq!(resumed["key"], "gen-1");
        assert_eq!(resumed["room_seq"], 12);
        assert_eq!(resumed["epoch"], "e1");
        assert_eq!((resumed["mid"].clone(), resumed["room_id"].clone()), (json!(42), json!("live://1000")));
        assert_eq!(resumed["accepts"], json!([1000]));

        assert_eq!(next_message(&mut client).await.body, "r13");
        assert_eq!(client.room_seq(), 13);
        client.close().await;
    }

    #[tokio::test]
    async fn tcp_reconnects_to_the_other_comet_with_key_seq_and_epoch() {
        reconnects_to_the_other_comet(false).await;
    }

    #[tokio::test]
    async fn ws_reconnects_to_the_other_comet_with_key_seq_and_epoch() {
        reconnects_to_the_other_comet(true).await;
    }

    #[tokio::test]
    async fn heartbeat_replies_are_swallowed() {
        let a = fake_comet(false, |_| Script::accept(reply("k", 0, "", false))).await;
        let cfg = ResumeConfig { heartbeat_cap: Duration::from_millis(20), ..config(vec![], &a, false) };
        let mut client = ResumingClient::connect(cfg).await.unwrap();
        next_connected(&mut client).await;
        // Nothing but heartbeat replies arrives: recv must keep waiting.
        let quiet = tokio::time::timeout(Duration::from_millis(200), client.recv()).await;
        assert!(quiet.is_err(), "recv returned {quiet:?}");
        assert!(a.heartbeats.load(Ordering::SeqCst) >= 3);
        // Other replies are delivered.
        let seq = client.send(op::SUB, "1000").await.unwrap();
        assert_eq!(next_message(&mut client).await, Packet::new(op::SUB_REPLY, seq, "1000"));
        assert_eq!(client.reconnects(), 0);
    }

    #[tokio::test]
    async fn silent_comet_is_treated_as_lost() {
        let a = fake_comet(false, |_| Script {
            answer_heartbeats: false,
            ..Script::accept(reply("k", 5, "e", false))
        })
        .await;
        let b = fake_comet(false, |_| Script::accept(reply("k", 5, "e", true))).await;
        let logic = fake_logic(&[&b]).await;
        let cfg = ResumeConfig { heartbeat_cap: Duration::from_millis(30), ..config(vec![logic], &a, false) };
        let mut client = ResumingClient::connect(cfg).await.unwrap();
        next_connected(&mut client).await;
        assert!(next_connected(&mut client).await.recovered);
        assert_eq!(client.comet(), b.addr);
    }

    #[tokio::test]
    async fn unreachable_logic_falls_back_to_known_comets() {
        let mut a = fake_comet(false, |conn| Script {
            hang_up: conn == 0,
            ..Script::accept(reply("gen-2", 3, "", conn > 0))
        })
        .await;
        let dead = dead_addr().await;
        let mut client = ResumingClient::connect(config(vec![dead], &a, false)).await.unwrap();
        next_connected(&mut client).await;
        assert!(next_connected(&mut client).await.recovered);
        assert_eq!((client.comet(), client.reconnects()), (a.addr.as_str(), 1));
        next_auth(&mut a).await;
        let resumed = next_auth(&mut a).await;
        assert_eq!(resumed["key"], "gen-2");
        assert_eq!(resumed["room_seq"], 3);
        assert!(resumed.get("epoch").is_none(), "an empty epoch is not sent: {resumed}");
    }

    #[tokio::test]
    async fn refused_auth_is_retried() {
        let mut a = fake_comet(false, |conn| match conn {
            0 | 1 => Script { reply: None, ..Script::accept(Value::Null) },
            _ => Script::accept(reply("k", 1, "e", false)),
        })
        .await;
        let mut client = ResumingClient::connect(config(vec![], &a, false)).await.unwrap();
        assert_eq!(client.reconnects(), 0);
        next_connected(&mut client).await;
        for _ in 0..3 {
            let auth = next_auth(&mut a).await;
            assert!(auth.get("room_seq").is_none(), "the first auth is retried as configured");
        }
    }

    #[tokio::test]
    async fn gives_up_after_the_outage_limit() {
        let a = fake_comet(false, |_| Script::accept(Value::Null)).await;
        let cfg = ResumeConfig {
            first_comet: Some(dead_addr().await),
            give_up_after: Duration::from_millis(200),
            ..config(vec![], &a, false)
        };
        let started = Instant::now();
        let err = ResumingClient::connect(cfg).await.err().expect("no comet to reach");
        assert!(matches!(&err, ClientError::GaveUp { last, .. } if !last.is_empty()), "{err}");
        assert!(started.elapsed() < Duration::from_millis(600));
    }
}
