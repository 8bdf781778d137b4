//! Test harness: a real comet on 127.0.0.1 port 0 with its own QUIC endpoint, talking to
//! an in-process fake logic node served over QUIC (the real RPC path). The fake records
//! every request and answers like logic would; its endpoint doubles as the job side that
//! opens push streams to the comet.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use goim_client::{AuthRequest, Client, ClientError};
use goim_net::quic::{
    read_frame, serve_unary, write_frame, BiStream, ClusterTls, QuicEndpoint, StreamHandler,
};
use goim_net::rpc::logic::{Connected, HistoryPage, Joined, LogicReply, LogicRequest, LogicResult};
use goim_net::rpc::push::{PushAck, PushBatch};
use goim_net::rpc::{PushRecord, PushTarget, RpcError, Service};
use tokio_util::sync::CancellationToken;

use super::{start, Comet, CometConfig, SlowConsumer};

fn endpoint() -> Arc<QuicEndpoint> {
    let tls = ClusterTls::generate().unwrap();
    QuicEndpoint::bind("127.0.0.1:0".parse().unwrap(), &tls).unwrap()
}

#[derive(Default)]
struct FakeState {
    requests: Mutex<Vec<LogicRequest>>,
    unavailable: AtomicBool,
    room_totals: Mutex<BTreeMap<String, u64>>,
    heartbeat_secs: AtomicU64,
    pushed: AtomicU64,
    /// Answer renewals as if the comet had expired, and `Resync` with these stale keys.
    expired: Mutex<Option<Vec<(String, u64)>>>,
    /// Room histories: (oldest retained offset, messages from it on); epoch `FAKE_EPOCH`.
    rooms: Mutex<BTreeMap<String, (u64, Vec<PushRecord>)>>,
    /// The room offset `Connect` and `ChangeRoom` report instead of the room's newest.
    join_offset: Mutex<Option<u64>>,
}

pub const FAKE_EPOCH: u64 = 0xe0;

impl FakeState {
    fn answer(&self, req: LogicRequest) -> LogicResult {
        self.requests.lock().unwrap().push(req.clone());
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(RpcError::Unavailable("no leader".into()));
        }
        match req {
            LogicRequest::Connect { conn, auth, .. } => {
                if auth.token.as_deref() == Some("bad") {
                    return Err(RpcError::Rejected("invalid token".into()));
                }
                let (room_seq, epoch) = match auth.room_id.is_empty() {
                    true => (0, 0),
                    false => (self.last_seq(&auth.room_id), FAKE_EPOCH),
                };
                Ok(LogicReply::Connected(Connected {
                    key: key_for(&auth.key, conn),
                    mid: auth.mid,
                    room_id: auth.room_id,
                    accepts: auth.accepts,
                    heartbeat_secs: self.heartbeat_secs.load(Ordering::SeqCst),
                    room_seq,
                    epoch,
                }))
            }
            LogicRequest::ChangeRoom { room, .. } => Ok(LogicReply::Joined(Joined {
                room_seq: self.last_seq(&room),
                epoch: if room.is_empty() { 0 } else { FAKE_EPOCH },
            })),
            LogicRequest::History { room, after, until, limit } => {
                let (first, records) =
                    self.rooms.lock().unwrap().get(&room).cloned().unwrap_or((1, Vec::new()));
                let last_seq = first + records.len() as u64 - 1;
                let records = records
                    .into_iter()
                    .filter(|r| r.room_seq().is_some_and(|s| s > after && (until == 0 || s <= until)))
                    .take(limit as usize)
                    .collect();
                Ok(LogicReply::History(HistoryPage { epoch: FAKE_EPOCH, last_seq, records }))
            }
            LogicRequest::RenewOnline { .. } => {
                let counts = self.room_totals.lock().unwrap().clone();
                match self.expired.lock().unwrap().is_some() {
                    true => Ok(LogicReply::Reregistered(counts)),
                    false => Ok(LogicReply::RoomCounts(counts)),
                }
            }
            LogicRequest::Resync { .. } => {
                Ok(LogicReply::Stale(self.expired.lock().unwrap().take().unwrap_or_default()))
            }
            LogicRequest::Receive { .. } => {
                Ok(LogicReply::Pushed { seq: self.pushed.fetch_add(1, Ordering::SeqCst) + 1 })
            }
            LogicRequest::Disconnect { .. } => Ok(LogicReply::Done),
            other => Err(RpcError::BadRequest(format!("not a comet call: {other:?}"))),
        }
    }
}

impl FakeState {
    fn last_seq(&self, room: &str) -> u64 {
        if let Some(offset) = *self.join_offset.lock().unwrap() {
            return offset;
        }
        self.rooms.lock().unwrap().get(room).map_or(0, |(first, records)| first + records.len() as u64 - 1)
    }
}

/// The key logic assigns: the client's, or a generated one.
fn key_for(key: &str, conn: u64) -> String {
    if key.is_empty() {
        format!("gen-{conn}")
    } else {
        key.to_string()
    }
}

struct FakeHandler(Arc<FakeState>);

impl StreamHandler for FakeHandler {
    fn handle(self: Arc<Self>, stream: BiStream) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let state = self.0.clone();
            serve_unary(stream, "logic", |req: LogicRequest| async move { state.answer(req) }).await;
        })
    }
}

pub struct FakeLogic {
    state: Arc<FakeState>,
    endpoint: Arc<QuicEndpoint>,
}

impl FakeLogic {
    pub async fn start() -> FakeLogic {
        let state = Arc::new(FakeState::default());
        state.heartbeat_secs.store(240, Ordering::SeqCst);
        let endpoint = endpoint();
        endpoint.register(Service::Logic, Arc::new(FakeHandler(state.clone())));
        FakeLogic { state, endpoint }
    }

    pub fn addr(&self) -> String {
        self.endpoint.local_addr().unwrap().to_string()
    }

    /// Appends a message to `room`'s history (as a committed room push would); returns the
    /// record to deliver live.
    pub fn commit_room(&self, room: &str, body: &str) -> PushRecord {
        let mut rooms = self.state.rooms.lock().unwrap();
        let (first, records) = rooms.entry(room.to_string()).or_insert((1, Vec::new()));
        let room_seq = *first + records.len() as u64;
        let record = PushRecord {
            body: Bytes::from(body.to_string()),
            ..rec(room_seq, PushTarget::Room { room: room.into(), room_seq }, 1000, "")
        };
        records.push(record.clone());
        record
    }

    /// Joins report `offset` as the room's offset (as if recorded before the newest pushes).
    pub fn set_join_offset(&self, offset: Option<u64>) {
        *self.state.join_offset.lock().unwrap() = offset;
    }

    /// Forgets `room`'s history below offset `first` (retention).
    pub fn trim_room(&self, room: &str, first: u64) {
        let mut rooms = self.state.rooms.lock().unwrap();
        if let Some((oldest, records)) = rooms.get_mut(room) {
            let n = first.saturating_sub(*oldest).min(records.len() as u64) as usize;
            records.drain(..n);
            *oldest += n as u64;
        }
    }

    /// The next renewal answers "expired"; the `Resync` that follows reports `stale`.
    pub fn expire_comet(&self, stale: Vec<(String, u64)>) {
        *self.state.expired.lock().unwrap() = Some(stale);
    }

    pub fn endpoint(&self) -> Arc<QuicEndpoint> {
        self.endpoint.clone()
    }

    pub fn requests(&self) -> Vec<LogicRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn renews(&self) -> Vec<LogicRequest> {
        let all = self.requests().into_iter();
        all.filter(|r| matches!(r, LogicRequest::RenewOnline { .. })).collect()
    }

    /// The conn id of the latest Connect that ended up with `key`.
    pub fn conn_of(&self, key: &str) -> Option<u64> {
        self.requests().into_iter().rev().find_map(|r| match r {
            LogicRequest::Connect { conn, auth, .. } if key_for(&auth.key, conn) == key => Some(conn),
            _ => None,
        })
    }

    pub fn set_unavailable(&self, unavailable: bool) {
        self.state.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// The cluster-wide count RenewOnline replies report for `room`.
    pub fn set_room_total(&self, room: &str, total: u64) {
        let mut totals = self.state.room_totals.lock().unwrap();
        totals.insert(room.into(), total);
    }
}

/// The knobs tests vary; the rest of `CometConfig` is the default with port 0.
pub struct TestConfig {
    pub handshake_timeout: Duration,
    pub heartbeat: Duration,
    /// What the fake logic puts in `Connected` (0: the comet's own heartbeat).
    pub logic_heartbeat_secs: u64,
    pub outbound_queue: usize,
    pub slow_consumer: SlowConsumer,
    pub limits: super::admission::ClientLimits,
}

impl Default for TestConfig {
    fn default() -> Self {
        TestConfig {
            handshake_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(240),
            logic_heartbeat_secs: 240,
            outbound_queue: 1024,
            slow_consumer: SlowConsumer::Close,
            limits: Default::default(),
        }
    }
}

pub struct Cluster {
    pub comet: Arc<Comet>,
    pub logic: FakeLogic,
    pub shutdown: CancellationToken,
    comet_endpoint: Arc<QuicEndpoint>,
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(TestConfig::default()).await
    }

    pub async fn start_with(test: TestConfig) -> Cluster {
        let logic = FakeLogic::start().await;
        logic.state.heartbeat_secs.store(test.logic_heartbeat_secs, Ordering::SeqCst);
        let comet_endpoint = endpoint();
        let quic = comet_endpoint.local_addr().unwrap().to_string();
        let any = "127.0.0.1:0".parse().unwrap();
        let cfg = CometConfig {
            id: format!("comet-test-{quic}"),
            tcp_addr: any,
            ws_addr: any,
            advertise_quic: quic,
            handshake_timeout: test.handshake_timeout,
            heartbeat: test.heartbeat,
            outbound_queue: test.outbound_queue,
            slow_consumer: test.slow_consumer,
            limits: test.limits,
            renew_interval: Duration::from_secs(60),
            buckets: 4,
            rpc_timeout: Duration::from_secs(2),
            ..CometConfig::default()
        };
        let shutdown = CancellationToken::new();
        let comet = start(cfg, comet_endpoint.clone(), vec![logic.addr()], shutdown.clone()).await.unwrap();
        // Let the first renew land, so tests that set room totals see only their own.
        wait_until(|| !logic.renews().is_empty()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        Cluster { comet, logic, shutdown, comet_endpoint }
    }

    pub fn tcp(&self) -> String {
        self.comet.local_addrs().0.to_string()
    }

    pub fn ws(&self) -> String {
        format!("ws://{}/sub", self.comet.local_addrs().1)
    }

    pub fn comet_quic(&self) -> String {
        self.comet_endpoint.local_addr().unwrap().to_string()
    }

    pub async fn client(&self, ws: bool) -> Client {
        if ws {
            Client::connect_ws(&self.ws()).await.unwrap()
        } else {
            Client::connect_tcp(&self.tcp()).await.unwrap()
        }
    }

    /// Pushes one partition-0 batch on a fresh push stream, as a job would; returns the ack.
    pub async fn push(&self, last_seq: u64, records: Vec<PushRecord>) -> PushAck {
        let batch = PushBatch { partition: 0, records, last_seq };
        let (mut send, mut recv) = self.logic.endpoint.open(&self.comet_quic(), Service::Push).await.unwrap();
        write_frame(&mut send, &batch).await.unwrap();
        let ack = tokio::time::timeout(Duration::from_secs(2), read_frame::<PushAck>(&mut recv))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        send.finish().unwrap();
        ack
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A partition-0 record.
pub fn rec(seq: u64, target: PushTarget, op: i32, body: &'static str) -> PushRecord {
    PushRecord { partition: 0, seq, ts_ms: 0, target, op, body: Bytes::from_static(body.as_bytes()) }
}

pub fn auth(mid: i64, room: &str, accepts: &[i32]) -> AuthRequest {
    AuthRequest {
        mid,
        room_id: room.into(),
        platform: "web".into(),
        accepts: accepts.to_vec(),
        ..AuthRequest::default()
    }
}

/// The server closed the connection (cleanly or with a reset) within 2 s.
pub async fn closed(client: &mut Client) -> bool {
    match client.recv_timeout(Duration::from_secs(2)).await {
        Ok(None) => true,
        Ok(Some(_)) | Err(ClientError::Timeout) => false,
        Err(_) => true,
    }
}

/// Polls `done` for up to 2 s.
pub async fn wait_until(done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 2 s");
}
