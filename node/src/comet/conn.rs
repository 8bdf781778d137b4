//! The per-connection protocol state machine (docs/PROTOCOL.md §3), shared by TCP and
//! WebSocket: the handshake timer and auth (op 7), then heartbeats, uplink messages, room
//! changes and sub/unsub until the connection closes, and the cleanup every close path
//! shares (leave the bucket, tell logic). Joining a room (auth, op 12) goes through
//! `recover`: the reply, then the room's replay, then live frames. With `--auth jwt` the
//! auth body's token is checked here (`auth::ClientAuth`), and what it grants is checked
//! again on every room change.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use goim_net::packet::auth::{parse_ops, ChangeRoom};
use goim_net::packet::{op, Packet};
use goim_net::rpc::logic::{AuthBody, Connected};
use serde::Serialize;
use tokio::time::Instant;

use super::admission::Admitted;
use super::channel::{Channel, Frame, Session};
use super::recover::{self, epoch_text, Joined, Plan, Resume};
use super::transport::{note_read_error, FrameSink, PacketSource};
use super::writer::Writer;
use super::{lock, Comet};
use crate::auth::{Grant, Refusal};
use crate::rate::TokenBucket;
use goim_net::rpc::RpcError;

/// Op-4 messages one connection may have waiting on logic at once.
pub const MAX_UPLINK_IN_FLIGHT: usize = 16;
/// How long a refused connection may take to receive its last reply and close.
const HANG_UP_TIMEOUT: Duration = Duration::from_secs(1);

/// The op-8 body of a successful auth.
#[derive(Debug, Serialize)]
pub struct AuthReplyJson<'a> {
    pub key: &'a str,
    pub mid: i64,
    pub room_id: &'a str,
    pub heartbeat: u64,
    pub room_seq: u64,
    pub epoch: String,
    pub recovered: bool,
}

/// The op-13 body answering a JSON room change ([ext]; a plain room id is echoed, as goim).
#[derive(Debug, Serialize)]
pub struct ChangeRoomReplyJson<'a> {
    pub room_id: &'a str,
    pub room_seq: u64,
    pub epoch: String,
    pub recovered: bool,
}

/// `{"error":"…"}`, the body of a refused auth or uplink message.
pub fn error_body(why: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "error": why }).to_string())
}

/// Serves one accepted connection until it closes, in one task that reads and writes
/// (this is the task's future: an async fn keeps its arguments for its whole life, so
/// nothing wraps it). `deadline` ends the handshake; `_admitted` holds the connection's
/// place in the comet's counts until it ends.
///
/// The handshake (auth, logic's answer, the room's replay) runs boxed: its state is large
/// and short-lived, and an idle connection's task keeps only the small state of `run`.
pub async fn serve<R: PacketSource, W: FrameSink>(
    comet: Arc<Comet>,
    peer: SocketAddr,
    deadline: Instant,
    mut reader: R,
    sink: W,
    _admitted: Admitted,
) {
    let mut writer = Writer::new(sink);
    let Some(conn) = Box::pin(handshake(comet, peer, deadline, &mut reader, &mut writer)).await else {
        writer.close().await;
        return;
    };
    let idle_timeout = conn.heartbeat.saturating_mul(2);
    conn.run(&mut reader, &mut writer, idle_timeout).await;
    conn.teardown();
    writer.close().await;
}

/// Auth through to the channel registered and the auth reply (with the room's replay)
/// queued; `None` when the connection was refused (its refusal written) or went away.
async fn handshake<R: PacketSource, W: FrameSink>(
    comet: Arc<Comet>,
    peer: SocketAddr,
    deadline: Instant,
    reader: &mut R,
    writer: &mut Writer<W>,
) -> Option<Connection> {
    let auth = await_auth(&comet, deadline, reader).await?;
    let conn = comet.next_conn_id();
    let Authenticated { session, heartbeat, joined, resume, grant } =
        match authenticate(&comet, conn, peer, &auth).await {
            Ok(accepted) => accepted,
            Err(refusal) => {
                metrics::counter!("goim_comet_auth_refused_total", "reason" => refusal.reason).increment(1);
                tracing::debug!(%peer, why = %refusal.why, reason = refusal.reason, "auth refused");
                let reply = auth.reply(op::AUTH_REPLY, error_body(&refusal.why));
                hang_up(writer, reply).await;
                return None;
            }
        };

    let ch = Arc::new(Channel::new(conn, peer.ip(), session, comet.queue_policy()));
    // Held until the reply and the room's replay are queued; joins the room here.
    ch.hold();
    comet.register(ch.clone());
    let room = ch.room();
    let plan = match &room {
        Some(room) => recover::prepare(&comet, room, joined, resume).await,
        None => Plan::default(),
    };
    let reply = AuthReplyJson {
        key: &ch.key,
        mid: ch.mid,
        room_id: room.as_deref().unwrap_or(""),
        heartbeat: heartbeat.as_secs(),
        room_seq: plan.room_seq,
        epoch: epoch_text(joined.epoch),
        recovered: plan.recovered,
    };
    let body = serde_json::to_vec(&reply).unwrap_or_default();
    ch.resume(Frame::Packet(auth.reply(op::AUTH_REPLY, body).to_bytes()), plan.room_seq, plan.replay);

    let uplink_rate = TokenBucket::new(comet.config().limits.uplink_rate, Instant::now());
    Some(Connection {
        comet,
        ch,
        heartbeat,
        uplink_sent: Default::default(),
        uplink_rate: std::sync::Mutex::new(uplink_rate),
        grant: std::sync::Mutex::new(grant.map(Box::new)),
    })
}

/// Writes a connection's last words before it closes without a channel.
async fn hang_up<W: FrameSink>(writer: &mut Writer<W>, last_words: Packet) {
    let write = writer.write_one(Frame::Packet(last_words.to_bytes()));
    let _ = tokio::time::timeout(HANG_UP_TIMEOUT, write).await;
}

/// Reads until an auth packet, ignoring anything else; `None` if the connection ends, the
/// deadline passes or the comet shuts down first.
async fn await_auth<R: PacketSource>(comet: &Comet, deadline: Instant, reader: &mut R) -> Option<Packet> {
    let find_auth = async {
        loop {
            match reader.next_packet().await {
                Ok(Some(p)) if p.op == op::AUTH => return Some(p),
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(e) => {
                    note_read_error(R::TRANSPORT, &e);
                    return None;
                }
            }
        }
    };
    tokio::select! {
        _ = comet.shutdown_token().cancelled() => None,
        found = tokio::time::timeout_at(deadline, find_auth) => found.unwrap_or_else(|_| {
            metrics::counter!("goim_comet_auth_refused_total", "reason" => "timeout")
                .increment(1);
            None
        }),
    }
}

impl From<RpcError> for Refusal {
    fn from(e: RpcError) -> Refusal {
        let (why, reason) = match &e {
            RpcError::Rejected(m) if m.starts_with(goim_raft::command::KEY_HELD) => (m.clone(), "key_taken"),
            RpcError::Rejected(m) | RpcError::BadRequest(m) => (m.clone(), "rejected"),
            other => (other.to_string(), "logic"),
        };
        Refusal { why, reason }
    }
}

/// Parses the auth body and asks logic to connect the session; returns it with the
/// heartbeat interval to tell the client.
async fn authenticate(
    comet: &Comet,
    conn: u64,
    peer: SocketAddr,
    auth: &Packet,
) -> Result<Authenticated, Refusal> {
    comet.admission().allow_auth(peer.ip())?;
    let mut body = AuthBody::parse(&auth.body)
        .map_err(|e| Refusal { why: format!("bad auth body: {e}"), reason: "json" })?;
    comet.admission().check_auth_body(&body)?;
    let grant = comet.config().auth.admit(&body)?;
    // The token's key, when it names one and the client sent none.
    if let Some(key) = grant.as_ref().and_then(|g| g.key.as_ref()).filter(|_| body.key.is_empty()) {
        body.key = key.clone();
    }
    let resume = body.room_seq.map(|room_seq| Resume { room_seq, epoch: body.epoch.clone() });
    let Connected { key, mid, room_id, accepts, heartbeat_secs, room_seq, epoch } =
        comet.logic().connect(comet.id(), conn, peer.ip().to_string(), body).await?;
    let heartbeat = match heartbeat_secs {
        0 => comet.config().heartbeat,
        secs => Duration::from_secs(secs),
    };
    let session = Session { key, mid, room: (!room_id.is_empty()).then_some(room_id), accepts };
    Ok(Authenticated { session, heartbeat, joined: Joined { room_seq, epoch }, resume, grant })
}

/// What logic confirmed at auth, and what the client asked to resume from.
struct Authenticated {
    session: Session,
    heartbeat: Duration,
    joined: Joined,
    resume: Option<Resume>,
    /// What the client's token allows (`None` with `--auth none`).
    grant: Option<Grant>,
}

/// An authenticated connection's reader side.
struct Connection {
    comet: Arc<Comet>,
    ch: Arc<Channel>,
    /// The interval told to the client; twice it without a heartbeat closes the connection.
    heartbeat: Duration,
    /// Op-4 messages sent so far (numbers each one for its idempotency id).
    uplink_sent: std::sync::atomic::AtomicU64,
    /// Op-4 messages the client may still send (`--uplink-rate`).
    uplink_rate: std::sync::Mutex<TokenBucket>,
    /// What the client's token allows (`None` with `--auth none`); a JSON room change may
    /// replace it with a fresh token. Boxed: most connections have none, and every
    /// connection's task has room for this.
    grant: std::sync::Mutex<Option<Box<Grant>>>,
}

impl Connection {
    /// Handles packets and writes what is queued until the client leaves, breaks the
    /// protocol, a write fails, or the channel is closed (or finished: then its last words
    /// are written first). Idling past `idle_timeout` without a heartbeat closes the
    /// channel (`idle`'s sweeper). While waiting the task holds no timer and no read
    /// future: the reader keeps its own partial input and is polled afresh.
    async fn run<R: PacketSource, W: FrameSink>(
        &self,
        reader: &mut R,
        writer: &mut Writer<W>,
        idle_timeout: Duration,
    ) {
        let idle_ms = u64::try_from(idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let clock = self.comet.clock();
        self.ch.heartbeat_due_by(clock.now_ms().saturating_add(idle_ms));
        loop {
            // A close wakes `ready` too (one wait fewer in the task's state).
            let packet = tokio::select! {
                biased;
                _ = self.ch.ready() => None,
                read = poll_fn(|cx| reader.poll_packet(cx)) => match read {
                    Ok(Some(packet)) => Some(packet),
                    Ok(None) => return,
                    Err(e) => {
                        note_read_error(R::TRANSPORT, &e);
                        return;
                    }
                },
            };
            if self.ch.is_closed() {
                return;
            }
            if let Some(packet) = packet {
                if packet.op == op::HEARTBEAT {
                    self.ch.heartbeat_due_by(clock.now_ms().saturating_add(idle_ms));
                }
                let handled = if packet.op == op::CHANGE_ROOM {
                    // Boxed: a room change's state (logic's answer, the replay) is large
                    // and rare; the idle connection's task should not carry room for it.
                    Box::pin(self.change_room(packet)).await;
                    self.still_open()
                } else {
                    self.handle(packet)
                };
                if handled.is_break() {
                    return;
                }
            }
            // Whatever is queued now (a reply, pushes) goes out before the next read.
            let written = tokio::select! {
                biased;
                _ = self.ch.closed() => return,
                // Boxed: the write's state is needed only while it lasts, not by the idle task.
                written = Box::pin(writer.drain(&self.ch)) => written,
            };
            if written.is_err() || self.ch.finished() {
                return;
            }
        }
    }

    /// Answers every packet but a room change (`change_room`), without waiting.
    fn handle(&self, p: Packet) -> ControlFlow<()> {
        let reply = match p.op {
            op::HEARTBEAT => {
                let online = self.ch.room().map_or(0, |r| self.comet.room_online(&r));
                let online = i32::try_from(online).unwrap_or(i32::MAX);
                p.reply(op::HEARTBEAT_REPLY, online.to_be_bytes().to_vec())
            }
            op::SEND_MSG => {
                self.send_msg(p);
                return ControlFlow::Continue(());
            }
            op::SUB => {
                self.ch.subscribe(&parse_ops(&p.body));
                p.reply(op::SUB_REPLY, p.body.clone())
            }
            op::UNSUB => {
                self.ch.unsubscribe(&parse_ops(&p.body));
                p.reply(op::UNSUB_REPLY, p.body.clone())
            }
            other => p.reply(other, Bytes::new()),
        };
        self.reply(reply)
    }

    fn reply(&self, p: Packet) -> ControlFlow<()> {
        self.ch.push(Frame::Packet(p.to_bytes()));
        self.still_open()
    }

    fn still_open(&self) -> ControlFlow<()> {
        if self.ch.is_closed() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// Forwards an op-4 message to logic without holding up the reader; its op-5 reply
    /// goes out when logic answers (possibly after later replies).
    fn send_msg(&self, p: Packet) {
        let rate = self.comet.config().limits.uplink_rate;
        if !lock(&self.uplink_rate).take(rate, Instant::now()) {
            metrics::counter!("goim_comet_uplink_refused_total", "reason" => "rate_limited").increment(1);
            let _ = self.reply(p.reply(op::SEND_MSG_REPLY, error_body("rate limited")));
            return;
        }
        if !self.ch.take_uplink_place(MAX_UPLINK_IN_FLIGHT) {
            metrics::counter!("goim_comet_uplink_refused_total", "reason" => "in_flight").increment(1);
            let _ = self.reply(p.reply(op::SEND_MSG_REPLY, error_body("too many messages in flight")));
            return;
        };
        let comet = self.comet.clone();
        let ch = self.ch.clone();
        let n = self.uplink_sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async move {
            let id = format!("uplink/{}/{}/{n}", comet.id(), ch.conn);
            let sent =
                comet.logic().receive(id, comet.id(), ch.key.clone(), ch.mid, p.op, p.body.clone()).await;
            let body = match sent {
                Ok(seq) => Bytes::from(serde_json::json!({ "seq": seq }).to_string()),
                Err(e) => error_body(&e.to_string()),
            };
            ch.push(Frame::Packet(p.reply(op::SEND_MSG_REPLY, body).to_bytes()));
            ch.give_uplink_place();
        });
    }

    /// Records the move with logic, then moves the channel locally (even if logic could
    /// not be told: delivery follows local membership) and replies: the body echoed, or
    /// for a JSON body the new room's offset and whether the asked one was recovered.
    async fn change_room(&self, p: Packet) {
        let asked = ChangeRoom::is_json(&p.body);
        let target = match ChangeRoom::parse(&p.body) {
            Ok(target) => target,
            Err(e) => {
                metrics::counter!("goim_comet_bad_requests_total", "op" => "change_room").increment(1);
                let why = error_body(&format!("bad change-room JSON: {e}"));
                self.ch.push(Frame::Packet(p.reply(op::CHANGE_ROOM_REPLY, why).to_bytes()));
                return;
            }
        };
        if let Err(too_long) = self.comet.admission().check_room(&target.room_id) {
            metrics::counter!("goim_comet_bad_requests_total", "op" => "change_room").increment(1);
            let why = error_body(&too_long.why);
            self.ch.push(Frame::Packet(p.reply(op::CHANGE_ROOM_REPLY, why).to_bytes()));
            return;
        }
        if let Err(refusal) = self.may_join(&target) {
            metrics::counter!("goim_comet_auth_refused_total", "reason" => refusal.reason).increment(1);
            tracing::debug!(key = %self.ch.key, why = %refusal.why, "room change refused");
            let reply = p.reply(op::CHANGE_ROOM_REPLY, error_body(&refusal.why));
            self.ch.push(Frame::Packet(reply.to_bytes()));
            // The refusal is written, then the connection closes.
            self.ch.finish();
            return;
        }
        let logic = self.comet.logic();
        let joined = match logic
            .change_room(self.comet.id(), self.ch.key.clone(), self.ch.conn, target.room_id.clone())
            .await
        {
            Ok(joined) => Some(joined),
            Err(e) => {
                tracing::warn!(key = %self.ch.key, error = %e, "change room not recorded by logic");
                None
            }
        };
        let room = (!target.room_id.is_empty()).then(|| target.room_id.clone());
        self.comet.bucket(&self.ch.key).change_room(&self.ch, room.clone());
        let resume = target.room_seq.map(|room_seq| Resume { room_seq, epoch: target.epoch.clone() });
        let plan = match (&room, joined) {
            (Some(room), Some(joined)) => recover::prepare(&self.comet, room, joined, resume).await,
            // Logic did not answer: live from what this comet has handed the room so far.
            (Some(room), None) => Plan { room_seq: self.comet.delivered().room(room), ..Plan::default() },
            (None, _) => Plan::default(),
        };
        let body = if asked {
            let reply = ChangeRoomReplyJson {
                room_id: &target.room_id,
                room_seq: plan.room_seq,
                epoch: epoch_text(joined.map_or(0, |j| j.epoch)),
                recovered: plan.recovered,
            };
            Bytes::from(serde_json::to_vec(&reply).unwrap_or_default())
        } else {
            p.body.clone()
        };
        let reply = Frame::Packet(p.reply(op::CHANGE_ROOM_REPLY, body).to_bytes());
        self.ch.resume(reply, plan.room_seq, plan.replay);
    }

    /// With `--auth jwt`: the token (the one from auth, or a fresh one the change carries)
    /// must still be valid and allow the target room.
    fn may_join(&self, target: &ChangeRoom) -> Result<(), Refusal> {
        let mut grant = lock(&self.grant);
        let Some(current) = grant.as_mut() else {
            return Ok(());
        };
        if let Some(token) = target.token.as_deref() {
            if let Some(fresh) = self.comet.config().auth.verify(token)? {
                fresh.admits(self.ch.mid, &self.ch.key, "")?;
                **current = fresh;
            }
        }
        current.still_valid(crate::auth::jwt::now_secs())?;
        current.allows_room(&target.room_id)
    }

    /// Every close path ends here: leave the bucket, close, tell logic (in the background).
    fn teardown(self) {
        self.comet.unregister(&self.ch);
        self.ch.close();
        let (comet, key, conn) = (self.comet, self.ch.key.clone(), self.ch.conn);
        tokio::spawn(async move {
            if let Err(e) = comet.logic().disconnect(comet.id(), key, conn).await {
                tracing::debug!(error = %e, "disconnect not recorded by logic");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comet::testkit::{auth, closed, rec, wait_until, Cluster, TestConfig};
    use goim_client::{AuthRequest, Client, ClientError};
    use goim_net::rpc::logic::LogicRequest;
    use goim_net::rpc::PushTarget;

    /// What an idle TCP connection's one task holds (its future's state) stays small: the
    /// handshake's state is boxed and gone once it is done (issue [perf-fanout]: ≤ 2 KB per
    /// idle connection in all).
    #[tokio::test]
    async fn idle_connection_task_state_is_small() {
        let cluster = Cluster::start().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        let (read, write) = server.into_split();
        let source = crate::comet::tcp::TcpSource::new(read, 4096);
        let sink = crate::comet::tcp::TcpSink(write);
        let admitted = cluster.comet.admission.admit(peer.ip()).expect("admitted");
        let task = serve(cluster.comet.clone(), peer, Instant::now(), source, sink, admitted);
        let size = std::mem::size_of_val(&task);
        eprintln!("connection task state {size} B");
        // Two tasks held 896 + 640 B here (debug build) before they were one, and the one
        // 1,176 B (without the spawned wrapper's copies of the arguments) while it kept a
        // timer and a read future.
        assert!(size <= 700, "connection task state {size} B");
    }

    #[tokio::test]
    async fn auth_and_heartbeat_over_tcp_and_ws() {
        let cluster = Cluster::start().await;
        cluster.logic.set_room_total("live://1000", 10);
        let mut kept = Vec::new();
        for ws in [false, true] {
            let mut client = cluster.client(ws).await;
            let req = AuthRequest { key: String::new(), ..auth(123, "live://1000", &[1000]) };
            let reply = client.auth(&req).await.unwrap();
            assert!(reply.key.starts_with("gen-"), "logic generates the key");
            assert_eq!((reply.mid, reply.room_id.as_str()), (123, "live://1000"));
            assert_eq!((reply.heartbeat, reply.room_seq, reply.recovered), (240, 0, false));
            assert_eq!(client.heartbeat().await.unwrap(), 1 + ws as i32);
            kept.push(client);
        }
        assert_eq!(cluster.comet.conn_count(), 2);
        // Logic said 10 in the room, of which this comet reported 2 at that time: 8 are
        // elsewhere; the local share is counted live.
        crate::comet::online::renew_once(&cluster.comet).await.unwrap();
        let mut late = cluster.client(false).await;
        late.auth(&auth(9, "live://1000", &[])).await.unwrap();
        assert_eq!(late.heartbeat().await.unwrap(), 8 + 3);
        let mut roomless = cluster.client(true).await;
        roomless.auth(&auth(10, "", &[])).await.unwrap();
        assert_eq!(roomless.heartbeat().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn heartbeat_reply_echoes_ver_and_seq() {
        let cluster = Cluster::start().await;
        let mut client = cluster.client(false).await;
        client.auth(&auth(1, "r", &[])).await.unwrap();
        let hb = Packet { ver: 3, op: op::HEARTBEAT, seq: 77, body: Bytes::new() };
        client.send(&hb).await.unwrap();
        let reply = client.recv_timeout(Duration::from_secs(2)).await.unwrap().unwrap();
        assert_eq!((reply.ver, reply.op, reply.seq), (3, op::HEARTBEAT_REPLY, 77));
        assert_eq!(reply.body.as_ref(), 1i32.to_be_bytes());
    }

    #[tokio::test]
    async fn refused_auth_replies_error_then_closes() {
        let cluster = Cluster::start().await;
        for ws in [false, true] {
            let mut client = cluster.client(ws).await;
            let req = AuthRequest { token: Some("bad".into()), ..auth(1, "", &[]) };
            let err = client.auth(&req).await.unwrap_err();
            assert!(matches!(&err, ClientError::AuthRejected(e) if e == "invalid token"), "{err}");
            assert!(closed(&mut client).await);

            let mut client = cluster.client(ws).await;
            client.send(&Packet::new(op::AUTH, 1, "{not json")).await.unwrap();
            let reply = client.recv_timeout(Duration::from_secs(2)).await.unwrap().unwrap();
            assert_eq!(reply.op, op::AUTH_REPLY);
            let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            assert!(body["error"].as_str().unwrap().starts_with("bad auth body"));
            assert!(closed(&mut client).await);
        }
        assert_eq!(cluster.comet.conn_count(), 0);
    }

    #[tokio::test]
    async fn handshake_timeout_closes_and_early_packets_are_ignored() {
        let cluster = Cluster::start_with(TestConfig {
            handshake_timeout: Duration::from_millis(300),
            ..TestConfig::default()
        })
        .await;
        for ws in [false, true] {
            let mut client = cluster.client(ws).await;
            let started = std::time::Instant::now();
            client.send(&Packet::new(op::HEARTBEAT, 1, "")).await.unwrap();
            client.send(&Packet::new(op::SUB, 2, "1000")).await.unwrap();
            assert!(closed(&mut client).await, "ws={ws}");
            let waited = started.elapsed();
            assert!(waited >= Duration::from_millis(250), "{waited:?}");
        }
    }

    #[tokio::test]
    async fn idle_timeout_only_heartbeats_keep_alive() {
        let cluster = Cluster::start_with(TestConfig {
            heartbeat: Duration::from_millis(150),
            logic_heartbeat_secs: 0,
            ..TestConfig::default()
        })
        .await;
        let mut client = cluster.client(false).await;
        client.auth(&auth(1, "r", &[])).await.unwrap();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            client.heartbeat().await.unwrap();
        }
        client.request(op::SUB, "1000").await.unwrap();
        let started = std::time::Instant::now();
        assert!(closed(&mut client).await);
        assert!(started.elapsed() < Duration::from_millis(600));
        wait_until(|| cluster.comet.conn_count() == 0).await;
    }

    #[tokio::test]
    async fn ops_send_change_room_sub_unsub_and_unknown() {
        let cluster = Cluster::start().await;
        let mut client = cluster.client(true).await;
        let reply = client.auth(&auth(5, "live://a", &[])).await.unwrap();

        let sent = client.request(op::SEND_MSG, "hello").await.unwrap();
        assert_eq!(sent.as_ref(), br#"{"seq":1}"#);
        let received = cluster.logic.requests().into_iter().find_map(|r| match r {
            LogicRequest::Receive { key, mid, op, body, .. } => Some((key, mid, op, body)),
            _ => None,
        });
        let expected = (reply.key.clone(), 5, op::SEND_MSG, Bytes::from("hello"));
        assert_eq!(received, Some(expected));

        let echoed = client.request(op::CHANGE_ROOM, "live://b").await.unwrap();
        assert_eq!(echoed, "live://b");
        assert_eq!(cluster.comet.local_room_count("live://a"), 0);
        assert_eq!(cluster.comet.local_room_count("live://b"), 1);
        assert!(cluster.logic.requests().iter().any(|r| matches!(
            r, LogicRequest::ChangeRoom { room, .. } if room == "live://b"
        )));
        assert_eq!(client.request(op::CHANGE_ROOM, "").await.unwrap(), "");
        assert_eq!(cluster.comet.local_room_count("live://b"), 0);
        assert_eq!(client.heartbeat().await.unwrap(), 0);

        assert_eq!(client.request(op::SUB, "1000,1001").await.unwrap(), "1000,1001");
        assert_eq!(client.request(op::UNSUB, "1000").await.unwrap(), "1000");
        let ch = cluster.comet.channel(&reply.key).unwrap();
        assert!(!ch.accepts(1000) && ch.accepts(1001));

        client.send(&Packet::new(4242, 9, "ignored")).await.unwrap();
        let echo = client.recv_timeout(Duration::from_secs(2)).await.unwrap().unwrap();
        assert_eq!(echo, Packet::new(4242, 9, ""));
    }

    #[tokio::test]
    async fn uplink_error_is_reported_in_op5() {
        let cluster = Cluster::start().await;
        let mut client = cluster.client(false).await;
        client.auth(&auth(5, "", &[])).await.unwrap();
        cluster.logic.set_unavailable(true);
        let body = client.request(op::SEND_MSG, "x").await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(body["error"].as_str().unwrap().contains("unavailable"), "{body}");
    }

    #[tokio::test]
    async fn bad_header_len_closes_only_that_connection() {
        let cluster = Cluster::start().await;
        let mut kept = Vec::new();
        for ws in [false, true] {
            let mut good = cluster.client(ws).await;
            good.auth(&auth(1, "r", &[])).await.unwrap();
            let mut bad = cluster.client(ws).await;
            bad.auth(&auth(2, "r", &[])).await.unwrap();
            let mut wire = Packet::new(op::HEARTBEAT, 1, "").to_bytes().to_vec();
            wire[5] = 17;
            bad.send_raw(&wire).await.unwrap();
            assert!(closed(&mut bad).await, "ws={ws}");
            assert_eq!(good.heartbeat().await.unwrap(), 1 + ws as i32, "ws={ws}");
            kept.push(good);
        }
        wait_until(|| cluster.comet.conn_count() == 2).await;
    }

    #[tokio::test]
    async fn ws_junk_and_text_frames() {
        let cluster = Cluster::start().await;
        let mut text = cluster.client(true).await;
        text.auth(&auth(1, "r", &[])).await.unwrap();
        let wire = Packet::new(op::HEARTBEAT, 4, "").to_bytes();
        text.send_ws_text(std::str::from_utf8(&wire).unwrap()).await.unwrap();
        let reply = text.recv_timeout(Duration::from_secs(2)).await.unwrap().unwrap();
        assert_eq!((reply.op, reply.seq), (op::HEARTBEAT_REPLY, 4));

        let mut junk = cluster.client(true).await;
        junk.auth(&auth(2, "r", &[])).await.unwrap();
        junk.send_ws_text("hello, not a packet").await.unwrap();
        assert!(closed(&mut junk).await);

        let mut short = cluster.client(true).await;
        short.auth(&auth(3, "r", &[])).await.unwrap();
        let long = Packet::new(op::HEARTBEAT, 1, "abcd").to_bytes();
        short.send_raw(&long[..18]).await.unwrap();
        assert!(closed(&mut short).await, "packLen larger than the message");
        assert_eq!(text.heartbeat().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn same_key_replaces_and_disconnect_reaches_logic() {
        let cluster = Cluster::start().await;
        let req = AuthRequest { key: "dup".into(), ..auth(1, "r", &[]) };
        let mut first = cluster.client(false).await;
        first.auth(&req).await.unwrap();
        let mut second = cluster.client(true).await;
        second.auth(&req).await.unwrap();
        assert!(closed(&mut first).await);
        assert_eq!(second.heartbeat().await.unwrap(), 1);
        assert_eq!(cluster.comet.conn_count(), 1);

        second.close().await.unwrap();
        wait_until(|| cluster.comet.conn_count() == 0).await;
        wait_until(|| {
            let disconnects = cluster
                .logic
                .requests()
                .into_iter()
                .filter(|r| matches!(r, LogicRequest::Disconnect { key, .. } if key == "dup"));
            disconnects.count() == 2
        })
        .await;
    }

    #[tokio::test]
    async fn kick_closes_only_the_matching_conn() {
        let cluster = Cluster::start().await;
        let mut client = cluster.client(false).await;
        let reply = client.auth(&auth(1, "r", &[])).await.unwrap();
        let conn = cluster.logic.conn_of(&reply.key).unwrap();
        let kick =
            |conn| PushTarget::Kick { comet: cluster.comet.id().to_string(), key: reply.key.clone(), conn };
        cluster.push(1, vec![rec(1, kick(conn + 1), 0, "")]).await;
        assert_eq!(client.heartbeat().await.unwrap(), 1);
        cluster.push(2, vec![rec(2, kick(conn), 0, "")]).await;
        assert!(closed(&mut client).await);
    }

    #[tokio::test]
    async fn shutdown_closes_connections_and_stops_accepting() {
        let cluster = Cluster::start().await;
        let mut tcp = cluster.client(false).await;
        tcp.auth(&auth(1, "r", &[])).await.unwrap();
        let mut ws = cluster.client(true).await;
        ws.auth(&auth(2, "r", &[])).await.unwrap();
        let mut pending = cluster.client(false).await;
        cluster.shutdown.cancel();
        assert!(closed(&mut tcp).await);
        assert!(closed(&mut ws).await);
        assert!(closed(&mut pending).await);
        wait_until(|| cluster.comet.conn_count() == 0).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = Client::connect_tcp(&cluster.tcp()).await;
        assert!(refused.is_err(), "listener closed");
    }
}
