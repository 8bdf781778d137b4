//! The comet role (docs/ARCHITECTURE.md §9): client-facing gateway. It accepts goim clients on
//! TCP and WebSocket, authenticates them through logic, keeps their channels in sharded
//! buckets, and delivers the push batches jobs stream to it over QUIC.
//!
//! `start` is the one entry point; everything else hangs off the returned `Comet`.

pub mod admission;
pub mod bucket;
pub mod channel;
pub mod conn;
pub mod idle;
#[cfg(test)]
mod logic_failover;
pub mod online;
pub mod push;
pub mod recover;
pub mod room;
pub mod tcp;
pub mod transport;
pub mod writer;
pub mod ws;

#[cfg(test)]
mod testkit;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use goim_net::quic::QuicEndpoint;
use goim_net::rpc::Service;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::auth::ClientAuth;
use crate::config::{Config, RPC_TIMEOUT};
use crate::listen::{self, Refuser};
use crate::rate::Rate;
use crate::tls::ClientTls;
use admission::{Admission, Admitted, ClientLimits, Refused};
use bucket::Bucket;
use channel::{Channel, QueuePolicy};
use goim_net::rpc::logic_client::LogicClient;
use goim_net::LogEvery;
use online::OnlineSnapshot;
use push::{Delivered, PushHandler};

/// What a comet does when a connection's outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowConsumer {
    /// Close the connection (the client reconnects and can recover).
    #[default]
    Close,
    /// Drop the frame that did not fit.
    Drop,
}

impl SlowConsumer {
    /// The `policy` label of `goim_comet_slow_consumer_total`.
    pub fn label(self) -> &'static str {
        match self {
            SlowConsumer::Close => "close",
            SlowConsumer::Drop => "drop",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CometConfig {
    /// Unique comet id, e.g. "comet-127.0.0.1:3101".
    pub id: String,
    pub tcp_addr: SocketAddr,
    /// WebSocket listen address; clients connect to path `/sub`.
    pub ws_addr: SocketAddr,
    /// WebSocket over TLS (WSS, path `/sub`): its listen address and certificate, when
    /// the node has one.
    pub wss: Option<(SocketAddr, ClientTls)>,
    /// Addresses as clients should dial them (registered with logic).
    pub advertise_tcp: String,
    pub advertise_ws: String,
    /// This node's QUIC address, where jobs open push streams.
    pub advertise_quic: String,
    pub zone: String,
    pub weight: u32,
    pub max_body: usize,
    pub handshake_timeout: Duration,
    /// Heartbeat interval told to clients when logic does not set one; the idle timeout
    /// is twice the interval, and only heartbeats reset it.
    pub heartbeat: Duration,
    /// Frames queued per connection before it counts as a slow consumer.
    pub outbound_queue: usize,
    pub slow_consumer: SlowConsumer,
    /// RenewOnline period.
    pub renew_interval: Duration,
    pub buckets: usize,
    pub rpc_timeout: Duration,
    /// Most messages replayed to one joining client; a longer gap is not recovered.
    pub recover_max: u64,
    /// Connection, rate and size bounds on clients.
    pub limits: ClientLimits,
    /// Listen backlog of the TCP and WebSocket listeners.
    pub listen_backlog: u32,
    /// The largest frame this comet may send (a room batch of a job's push batch, a push
    /// body); a WebSocket connection's write buffer is capped at two of them.
    pub max_out_frame: usize,
    /// How clients authenticate (`--auth`).
    pub auth: ClientAuth,
}

impl CometConfig {
    /// The comet's part of the node's settings; `auth` and `tls` were read from the files
    /// the settings name.
    pub fn from_config(cfg: &Config, auth: ClientAuth, tls: Option<ClientTls>) -> CometConfig {
        let advertise = |given: &str, addr: SocketAddr| match given {
            "" => addr.to_string(),
            given => given.to_string(),
        };
        CometConfig {
            id: format!("comet-{}", cfg.quic_addr),
            tcp_addr: cfg.tcp_addr,
            ws_addr: cfg.ws_addr,
            wss: tls.map(|tls| (cfg.wss_addr, tls)),
            advertise_tcp: advertise(&cfg.advertise_tcp, cfg.tcp_addr),
            advertise_ws: advertise(&cfg.advertise_ws, cfg.ws_addr),
            advertise_quic: cfg.quic_addr.to_string(),
            zone: cfg.zone.clone(),
            weight: cfg.weight,
            max_body: cfg.max_body,
            handshake_timeout: Duration::from_millis(cfg.handshake_timeout_ms),
            heartbeat: Duration::from_secs(cfg.heartbeat_secs),
            outbound_queue: cfg.outbound_queue,
            slow_consumer: cfg.slow_consumer,
            renew_interval: Duration::from_millis(cfg.renew_interval_ms),
            buckets: 32,
            rpc_timeout: RPC_TIMEOUT,
            recover_max: cfg.recover_max,
            auth,
            limits: client_limits(cfg),
            listen_backlog: cfg.listen_backlog,
            max_out_frame: max_out_frame(cfg),
        }
    }
}

/// The comet's client bounds from the settings (`--max-connections 0`: derived from the
/// open-file limit).
fn client_limits(cfg: &Config) -> ClientLimits {
    let max_connections = match cfg.max_connections {
        0 => listen::auto_max_connections(listen::open_files_limit(), cfg.http_max_connections),
        n => n,
    };
    ClientLimits {
        max_connections,
        max_per_ip: cfg.max_connections_per_ip,
        conn_rate: Rate::new(cfg.conn_rate_per_ip, cfg.conn_burst_per_ip),
        auth_rate: Rate::new(cfg.auth_rate_per_ip, cfg.auth_burst_per_ip),
        ws_ping_rate: Rate::per_sec(cfg.ws_ping_rate),
        uplink_rate: Rate::per_sec(cfg.uplink_rate),
        max_key_len: cfg.max_key_len,
        max_room_len: cfg.max_room_len,
    }
}

/// The largest frame a comet sends: a room batch of a job's push batch (at most
/// `job_batch_bytes` of bodies, or one push body beyond it, each with its packet header).
fn max_out_frame(cfg: &Config) -> usize {
    let header = goim_net::packet::HEADER_LEN;
    let bodies = cfg.job_batch_bytes.max(cfg.max_push_body).saturating_add(cfg.max_push_body);
    bodies.saturating_add(cfg.job_batch_records.saturating_add(1).saturating_mul(header))
}

impl Default for CometConfig {
    fn default() -> Self {
        let tcp_addr = SocketAddr::from(([127, 0, 0, 1], 3101));
        let ws_addr = SocketAddr::from(([127, 0, 0, 1], 3102));
        CometConfig {
            id: format!("comet-{tcp_addr}"),
            tcp_addr,
            ws_addr,
            wss: None,
            advertise_tcp: tcp_addr.to_string(),
            advertise_ws: ws_addr.to_string(),
            advertise_quic: "127.0.0.1:3119".into(),
            zone: String::new(),
            weight: 1,
            max_body: goim_net::packet::DEFAULT_MAX_BODY,
            handshake_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(240),
            outbound_queue: 1024,
            slow_consumer: SlowConsumer::Close,
            renew_interval: Duration::from_secs(10),
            buckets: 32,
            rpc_timeout: Duration::from_secs(5),
            recover_max: 10_000,
            limits: ClientLimits::default(),
            listen_backlog: crate::listen::DEFAULT_BACKLOG,
            max_out_frame: 2 << 20,
            auth: ClientAuth::None,
        }
    }
}

/// A running comet: its channels, its logic client and its delivery cursors.
pub struct Comet {
    cfg: CometConfig,
    buckets: Box<[Bucket]>,
    logic: LogicClient,
    online: RwLock<OnlineSnapshot>,
    delivered: Delivered,
    next_conn: AtomicU64,
    tcp_addr: SocketAddr,
    ws_addr: SocketAddr,
    wss_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    clock: idle::Clock,
    admission: Arc<Admission>,
    refuser: Refuser,
    refusals_log: LogEvery,
}

/// Binds the TCP, WS (and WSS) listeners, registers the `Service::Push` handler on `endpoint`,
/// starts the renew loop. RPCs go to the first of `logic` and fail over to the next. When
/// `shutdown` is cancelled the comet stops accepting and closes every connection.
pub async fn start(
    cfg: CometConfig,
    endpoint: Arc<QuicEndpoint>,
    logic: Vec<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<Arc<Comet>> {
    let tcp = listen::bind(cfg.tcp_addr, cfg.listen_backlog)
        .with_context(|| format!("comet: bind tcp {}", cfg.tcp_addr))?;
    let ws = listen::bind(cfg.ws_addr, cfg.listen_backlog)
        .with_context(|| format!("comet: bind websocket {}", cfg.ws_addr))?;
    let wss = match &cfg.wss {
        Some((addr, _)) => Some(
            listen::bind(*addr, cfg.listen_backlog)
                .with_context(|| format!("comet: bind secure websocket {addr}"))?,
        ),
        None => None,
    };
    let comet = Arc::new(Comet {
        buckets: (0..cfg.buckets.max(1)).map(|_| Bucket::default()).collect(),
        logic: LogicClient::new(endpoint.clone(), logic, cfg.rpc_timeout),
        online: RwLock::new(OnlineSnapshot::default()),
        delivered: Delivered::default(),
        next_conn: AtomicU64::new(first_conn_id()),
        tcp_addr: tcp.local_addr()?,
        ws_addr: ws.local_addr()?,
        wss_addr: wss.as_ref().map(TcpListener::local_addr).transpose()?,
        shutdown,
        clock: idle::Clock::new(),
        admission: Admission::new(cfg.limits),
        refuser: Refuser::default(),
        refusals_log: LogEvery::new(listen::LOG_INTERVAL),
        cfg,
    });
    endpoint.register(Service::Push, Arc::new(PushHandler::new(&comet)));
    tokio::spawn(idle::sweep_loop(comet.clone()));
    tokio::spawn(accept(comet.clone(), tcp, Transport::Tcp));
    tokio::spawn(accept(comet.clone(), ws, Transport::Ws));
    if let Some(wss) = wss {
        tokio::spawn(accept(comet.clone(), wss, Transport::Wss));
    }
    tokio::spawn(online::renew_loop(comet.clone()));
    let (tcp_addr, ws_addr) = comet.local_addrs();
    let max_connections = comet.cfg.limits.max_connections;
    let wss = comet.wss_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
    tracing::info!(id = %comet.cfg.id, tcp = %tcp_addr, ws = %ws_addr, %wss, max_connections, "comet started");
    Ok(comet)
}

/// The client transports a comet listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Ws,
    /// WebSocket over TLS.
    Wss,
}

impl Transport {
    /// The `transport` metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }
}

/// One accept loop for every transport: every connection passes the comet's admission
/// (connections per process and per address, connection rate per address) or is refused
/// with a last word in its transport's terms, counted and logged at most once per interval.
async fn accept(comet: Arc<Comet>, listener: tokio::net::TcpListener, transport: Transport) {
    let name = match transport {
        Transport::Tcp => "comet_tcp",
        Transport::Ws => "comet_ws",
        Transport::Wss => "comet_wss",
    };
    let shutdown = comet.shutdown.clone();
    let admitting = comet.clone();
    listen::accept_loop(listener, name, shutdown, move |stream, peer| {
        admitting.admit(transport, stream, peer);
    })
    .await;
    if transport == Transport::Tcp {
        let connections = comet.conn_count();
        tracing::info!(connections, "comet stops accepting, closing connections");
    }
}

/// Conn ids start at the wall clock in microseconds, so a restarted comet (same id) does
/// not reuse the conn ids of sessions logic may still hold from its previous run.
fn first_conn_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
        .unwrap_or(1)
}

impl Comet {
    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    pub fn config(&self) -> &CometConfig {
        &self.cfg
    }

    /// Authenticated connections on this comet.
    pub fn conn_count(&self) -> usize {
        self.buckets.iter().map(Bucket::conn_count).sum()
    }

    /// The bound TCP and WS addresses (the actual ports when configured with port 0).
    pub fn local_addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.tcp_addr, self.ws_addr)
    }

    pub fn logic(&self) -> &LogicClient {
        &self.logic
    }

    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Admits an accepted connection and serves it, or refuses it.
    fn admit(self: &Arc<Self>, transport: Transport, stream: TcpStream, peer: SocketAddr) {
        let admitted: Result<Admitted, Refused> = self.admission.admit(peer.ip());
        match admitted {
            Ok(admitted) => match transport {
                Transport::Tcp => tcp::serve(self.clone(), stream, peer, admitted),
                Transport::Ws => ws::serve(self.clone(), stream, peer, admitted, None),
                Transport::Wss => {
                    let tls = self.cfg.wss.as_ref().map(|(_, tls)| tls.clone());
                    ws::serve(self.clone(), stream, peer, admitted, tls)
                }
            },
            Err(refused) => {
                metrics::counter!("goim_comet_refused_total", "transport" => transport.label(), "reason" => refused.label())
                    .increment(1);
                listen::note_refusal(&self.refusals_log, transport.label(), refused.label(), peer);
                match transport {
                    Transport::Tcp => self.refuser.refuse(stream, tcp::refusal(refused)),
                    Transport::Ws => self.refuser.refuse(stream, ws::refusal(refused)),
                    // A TLS client cannot read a plain answer: closed without a word.
                    Transport::Wss => drop(stream),
                }
            }
        }
    }

    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// The bucket that owns `key`.
    pub fn bucket(&self, key: &str) -> &Bucket {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let index = usize::try_from(hasher.finish() % self.buckets.len() as u64).unwrap_or(0);
        &self.buckets[index]
    }

    pub fn channel(&self, key: &str) -> Option<Arc<Channel>> {
        self.bucket(key).get(key)
    }

    pub fn queue_policy(&self) -> QueuePolicy {
        QueuePolicy { capacity: self.cfg.outbound_queue.max(1), slow: self.cfg.slow_consumer }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds an authenticated channel; a channel already holding its key is closed.
    /// A channel registered while the comet shuts down is closed here (the sweeper
    /// closes those registered before).
    pub fn register(&self, ch: Arc<Channel>) {
        match self.bucket(&ch.key).put(ch.clone()) {
            Some(old) => old.close(),
            None => metrics::gauge!("goim_comet_connections").increment(1.0),
        }
        if self.shutdown.is_cancelled() {
            ch.close();
        }
    }

    /// The clock heartbeat deadlines are kept on.
    pub fn clock(&self) -> &idle::Clock {
        &self.clock
    }

    /// Removes `ch` if it is still the channel of its key.
    pub fn unregister(&self, ch: &Channel) {
        if self.bucket(&ch.key).remove(ch) {
            metrics::gauge!("goim_comet_connections").decrement(1.0);
        }
    }

    /// Connections in `room` on this comet, now.
    pub fn local_room_count(&self, room: &str) -> usize {
        self.buckets.iter().map(|b| b.room_len(room)).sum()
    }

    /// The online count a heartbeat reply carries: other comets' share from the last
    /// RenewOnline reply plus this comet's current local count.
    pub fn room_online(&self, room: &str) -> u64 {
        let remote = read(&self.online).remote(room);
        remote.saturating_add(self.local_room_count(room) as u64)
    }

    pub fn online(&self) -> &RwLock<OnlineSnapshot> {
        &self.online
    }

    pub fn delivered(&self) -> &Delivered {
        &self.delivered
    }
}

/// Locks ignoring poison: every critical section here leaves its data consistent.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

pub fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}
