//! The node's one configuration type. Every setting comes from, in order of precedence: a
//! command-line flag, a `GOIM_*` environment variable, a key of the TOML file given with
//! `--config`, the built-in default (which runs a one-node cluster on loopback).
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::comet::SlowConsumer;

/// One attempt of a comet/job call to a logic node; past it the next node is tried (a
/// dead node is not noticed sooner: its QUIC connection only idles out after 5 s).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(3);

/// Declares `Settings` (every field optional: flags + env via clap, file via serde) and
/// `Config` (every field resolved), so each setting is written once. A setting may carry
/// more clap attributes (`#[arg(...)]`) after its doc comment.
macro_rules! settings {
    ($( $(#[doc = $doc:literal])* $(#[arg($($arg:tt)*)])* $name:ident : $ty:ty = $default:expr, $env:literal; )*) => {
        #[derive(Debug, Clone, Default, clap::Args, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Settings {
            /// TOML file with any of these settings as keys (flags and env win).
            #[arg(long, env = "GOIM_CONFIG")]
            #[serde(skip)]
            pub config: Option<PathBuf>,
            $( $(#[doc = $doc])* $(#[arg($($arg)*)])* #[arg(long, env = $env)] pub $name: Option<$ty>, )*
        }

        #[derive(Debug, Clone)]
        pub struct Config { $( $(#[doc = $doc])* pub $name: $ty, )* }

        impl Settings {
            fn or(self, file: Settings) -> Settings {
                Settings { config: self.config, $( $name: self.$name.or(file.$name), )* }
            }
            fn resolve(self) -> Config {
                Config { $( $name: self.$name.unwrap_or_else(|| $default), )* }
            }
        }
    };
}

settings! {
    /// This node's Raft id (unique in the cluster).
    node_id: u64 = 1, "GOIM_NODE_ID";
    /// Roles this process runs: any of logic, job, comet, comma-separated.
    roles: Roles = Roles(vec![Role::Logic, Role::Job, Role::Comet]), "GOIM_ROLES";
    /// Where sled keeps the Raft log and state, and the QUIC certificate.
    data_dir: PathBuf = PathBuf::from("./goim-data"), "GOIM_DATA_DIR";
    /// HTTP API, /health, /metrics and the web demo.
    http_addr: SocketAddr = ([127, 0, 0, 1], 3111).into(), "GOIM_HTTP_ADDR";
    /// goim TCP client port.
    tcp_addr: SocketAddr = ([127, 0, 0, 1], 3101).into(), "GOIM_TCP_ADDR";
    /// goim WebSocket client port (path /sub).
    ws_addr: SocketAddr = ([127, 0, 0, 1], 3102).into(), "GOIM_WS_ADDR";
    /// goim WebSocket-over-TLS client port (path /sub): served only with `--tls-cert`.
    wss_addr: SocketAddr = ([127, 0, 0, 1], 3103).into(), "GOIM_WSS_ADDR";
    /// HTTPS API port (the same API, /health, /metrics and demo as `--http-addr`): served
    /// only with `--tls-cert`.
    https_addr: SocketAddr = ([127, 0, 0, 1], 3113).into(), "GOIM_HTTPS_ADDR";
    /// TLS for clients and the API: the certificate chain (PEM, leaf first). With
    /// `--tls-key` (both or neither) the node also serves WSS on `--wss-addr` and HTTPS
    /// on `--https-addr`; the plain listeners stay.
    tls_cert: PathBuf = PathBuf::new(), "GOIM_TLS_CERT";
    /// TLS for clients and the API: the private key of `--tls-cert` (PEM).
    tls_key: PathBuf = PathBuf::new(), "GOIM_TLS_KEY";
    /// The node's QUIC endpoint for all cluster traffic.
    quic_addr: SocketAddr = ([127, 0, 0, 1], 3119).into(), "GOIM_QUIC_ADDR";
    /// Initial logic voters: 1=HOST:PORT,2=HOST:PORT,… (QUIC addresses). Empty = this node alone.
    /// A logic node whose id is not listed joins later, through `goim cluster add`.
    peers: Peers = Peers::default(), "GOIM_PEERS";
    /// For comet/job-only nodes: QUIC addresses of logic nodes, comma-separated.
    logic: Addrs = Addrs::default(), "GOIM_LOGIC";
    /// Largest client packet body (goim: 4096).
    max_body: usize = goim_net::packet::DEFAULT_MAX_BODY, "GOIM_MAX_BODY";
    /// Largest HTTP push body.
    max_push_body: usize = 64 * 1024, "GOIM_MAX_PUSH_BODY";
    /// Time a new connection has to authenticate.
    handshake_timeout_ms: u64 = 5_000, "GOIM_HANDSHAKE_TIMEOUT_MS";
    /// Client heartbeat interval told in the auth reply; idle timeout is twice this.
    heartbeat_secs: u64 = 240, "GOIM_HEARTBEAT_SECS";
    /// How often a comet reports its online counts (and renews its registration).
    renew_interval_ms: u64 = 10_000, "GOIM_RENEW_INTERVAL_MS";
    /// A comet (and its sessions) expires after this long without a report.
    comet_ttl_ms: u64 = 30_000, "GOIM_COMET_TTL_MS";
    /// Frames queued per connection before it is a slow consumer.
    outbound_queue: usize = 1024, "GOIM_OUTBOUND_QUEUE";
    /// Worker threads of a comet that shares its process with logic or a job (0: one per
    /// core). Fewer leave more of the cores to Raft, the job and the push API: on two
    /// cores, 1 cut the CPU per delivery of a 10k room by a fifth and added 5-13 ms to the
    /// 3-node latency (docs/BENCHMARKS.md, "Comet threads").
    comet_threads: usize = 0, "GOIM_COMET_THREADS";
    /// What to do with a slow consumer: close | drop.
    slow_consumer: SlowConsumer = SlowConsumer::Close, "GOIM_SLOW_CONSUMER";
    /// Comet zone and weight, as listed by /goim/nodes/*.
    zone: String = String::new(), "GOIM_ZONE";
    weight: u32 = 10, "GOIM_WEIGHT";
    /// Public client addresses of this comet, if not the listen addresses.
    advertise_tcp: String = String::new(), "GOIM_ADVERTISE_TCP";
    advertise_ws: String = String::new(), "GOIM_ADVERTISE_WS";
    /// Job: most records per push batch, and most body bytes.
    job_batch_records: usize = 1024, "GOIM_JOB_BATCH_RECORDS";
    job_batch_bytes: usize = 1 << 20, "GOIM_JOB_BATCH_BYTES";
    /// Job: while pushes keep coming, send a batch at most this often (goim's room
    /// `signal`, which holds room messages up to 1 s). A push arriving after a quiet spell
    /// goes at once; 0 sends whatever arrived as soon as the previous batch was acked.
    job_batch_hold_ms: u64 = 0, "GOIM_JOB_BATCH_HOLD_MS";
    /// Job: lease time-to-live on its partition.
    job_lease_ms: u64 = 3_000, "GOIM_JOB_LEASE_MS";
    /// Job: how long a comet that did not take a push batch is left alone. What concerns
    /// it meanwhile is held and sent first when it is tried again.
    job_comet_retry_ms: u64 = 2_000, "GOIM_JOB_COMET_RETRY_MS";
    /// Chat mode: op-4 messages from clients are pushed to the sender's room with this op
    /// (0 turns uplink routing off; goim only logs them).
    chat_op: i32 = 1000, "GOIM_CHAT_OP";
    /// Raft timing. openraft starts an election `election_max` (the leader lease) plus a
    /// random election timeout after the last heartbeat, and bounds every AppendEntries by
    /// the heartbeat interval: failover takes about 0.7 s with these defaults.
    raft_heartbeat_ms: u64 = 100, "GOIM_RAFT_HEARTBEAT_MS";
    raft_election_min_ms: u64 = 200, "GOIM_RAFT_ELECTION_MIN_MS";
    raft_election_max_ms: u64 = 400, "GOIM_RAFT_ELECTION_MAX_MS";
    /// Push-log retention: records kept at most, and their longest age.
    retention_records: u64 = 1_000_000, "GOIM_RETENTION_RECORDS";
    retention_ms: u64 = 24 * 3600 * 1000, "GOIM_RETENTION_MS";
    /// Room history (what reconnecting clients recover): messages kept per room (0: only
    /// the push-log limits apply), and their longest age.
    room_retention_records: u64 = 10_000, "GOIM_ROOM_RETENTION_RECORDS";
    room_retention_ms: u64 = 24 * 3600 * 1000, "GOIM_ROOM_RETENTION_MS";
    /// Most messages a comet replays to one reconnecting client; a longer gap is not
    /// recovered (`recovered:false`).
    recover_max: u64 = 10_000, "GOIM_RECOVER_MAX";
    /// Write batches (Raft entries of many client writes) committing at once.
    raft_batches_in_flight: usize = 2, "GOIM_RAFT_BATCHES_IN_FLIGHT";
    /// Build a Raft snapshot every this many log entries.
    snapshot_every: u64 = 20_000, "GOIM_SNAPSHOT_EVERY";
    /// How fast a snapshot build may write its file, in MiB/s (0: as fast as it can). A
    /// build reads and writes the whole state; spread out, it takes less of the cores the
    /// pushes need at any moment (docs/BENCHMARKS.md, "Snapshots held to a rate").
    snapshot_mb_per_s: u64 = 32, "GOIM_SNAPSHOT_MB_PER_S";
    /// sled's page cache for the Raft log and state, in MiB (sled's own default is 1 GiB).
    sled_cache_mb: u64 = 32, "GOIM_SLED_CACHE_MB";
    /// Pending connections each client listener (TCP, WebSocket, HTTP) queues before the
    /// kernel drops new ones (capped by net.core.somaxconn).
    listen_backlog: u32 = crate::listen::DEFAULT_BACKLOG, "GOIM_LISTEN_BACKLOG";
    /// Client connections (TCP + WebSocket) one comet holds at once; past it new ones are
    /// refused. 0 = derived from the open-file limit, leaving room for HTTP and the node.
    max_connections: usize = 0, "GOIM_MAX_CONNECTIONS";
    /// Client connections one source address (IPv4, or IPv6 /64) may hold (0 = no limit).
    max_connections_per_ip: usize = 1_000, "GOIM_MAX_CONNECTIONS_PER_IP";
    /// New client connections per second one address may open (0 = no limit), in bursts of
    /// `conn_burst_per_ip`.
    conn_rate_per_ip: u32 = 100, "GOIM_CONN_RATE_PER_IP";
    /// The burst of `conn_rate_per_ip`.
    conn_burst_per_ip: u32 = 200, "GOIM_CONN_BURST_PER_IP";
    /// Auths (op 7) per second one address may make (0 = no limit), in bursts of
    /// `auth_burst_per_ip`; more are refused with op 8 `{"error":"rate limited"}`.
    auth_rate_per_ip: u32 = 20, "GOIM_AUTH_RATE_PER_IP";
    /// The burst of `auth_rate_per_ip`.
    auth_burst_per_ip: u32 = 40, "GOIM_AUTH_BURST_PER_IP";
    /// WebSocket control frames (ping, pong) per second one connection may send, bursts of
    /// twice that (0 = no limit); more close it (1008 "ping rate exceeded").
    ws_ping_rate: u32 = 10, "GOIM_WS_PING_RATE";
    /// Op-4 (send message) packets per second one connection may send, bursts of twice
    /// that (0 = no limit); more are answered op 5 `{"error":"rate limited"}`.
    uplink_rate: u32 = 20, "GOIM_UPLINK_RATE";
    /// Longest key a client or a push may name (bytes).
    max_key_len: usize = 128, "GOIM_MAX_KEY_LEN";
    /// Longest room id a client (auth, room change) or a push may name (bytes).
    max_room_len: usize = 256, "GOIM_MAX_ROOM_LEN";
    /// Most keys or mids one push may name.
    max_push_targets: usize = 1_000, "GOIM_MAX_PUSH_TARGETS";
    /// HTTP connections open at once; past it new ones get 503 and are closed.
    http_max_connections: usize = 1_024, "GOIM_HTTP_MAX_CONNECTIONS";
    /// Time a client has to send a whole request head, counted from when the server waits
    /// for one (a new connection, or the previous response sent): also the keep-alive
    /// idle timeout.
    http_header_timeout_ms: u64 = 10_000, "GOIM_HTTP_HEADER_TIMEOUT_MS";
    /// Time a client has to send a whole request body.
    http_body_timeout_ms: u64 = 10_000, "GOIM_HTTP_BODY_TIMEOUT_MS";
    /// An HTTP connection moving no byte either way for this long is closed.
    http_idle_timeout_ms: u64 = 60_000, "GOIM_HTTP_IDLE_TIMEOUT_MS";
    /// FOR FAULT TESTING ONLY (hidden): a logic node acknowledges an HTTP push as soon as it
    /// is handed to Raft, before it commits, so acknowledged pushes can be lost. It exists so
    /// the fault-injection harness can prove its checker catches lost acknowledged writes.
    #[arg(hide = true, num_args = 0..=1, default_missing_value = "true")]
    #[arg(value_parser = clap::builder::BoolishValueParser::new())]
    unsafe_ack_before_commit: bool = false, "GOIM_UNSAFE_ACK_BEFORE_COMMIT";
    /// Client auth: `none` (goim: a client is whoever it claims to be) or `jwt` (the auth
    /// body's `token` must be a JWT for its mid; see README "Security").
    auth: String = "none".into(), "GOIM_AUTH";
    /// `--auth jwt`, HS256: the shared secret (or `--jwt-secret-file`).
    #[arg(hide_env_values = true)]
    jwt_secret: String = String::new(), "GOIM_JWT_SECRET";
    /// `--auth jwt`, HS256: a file holding the shared secret (surrounding whitespace ignored).
    jwt_secret_file: PathBuf = PathBuf::new(), "GOIM_JWT_SECRET_FILE";
    /// `--auth jwt`, RS256 or EdDSA: the PEM file of the public key tokens are signed for.
    jwt_public_key: PathBuf = PathBuf::new(), "GOIM_JWT_PUBLIC_KEY";
    /// Bearer token every `/goim/push/*` and `/cluster/*` call must carry
    /// (`Authorization: Bearer …`); empty = the API is open.
    #[arg(hide_env_values = true)]
    api_token: String = String::new(), "GOIM_API_TOKEN";
    /// With `--api-token`: the `/goim/*` reads (online, nodes, history, log) need it too
    /// (`/health`, `/metrics` and the demo page never do).
    #[arg(num_args = 0..=1, default_missing_value = "true")]
    #[arg(value_parser = clap::builder::BoolishValueParser::new())]
    api_token_reads: bool = false, "GOIM_API_TOKEN_READS";
    /// Cluster mTLS: the cluster CA certificate (PEM, from `goim cluster certs`). With
    /// `--cluster-cert` and `--cluster-key` (all three or none), QUIC peers must present a
    /// certificate from this CA; without them a node generates its own (dev mode).
    cluster_ca: PathBuf = PathBuf::new(), "GOIM_CLUSTER_CA";
    /// Cluster mTLS: this node's certificate (PEM, signed by `--cluster-ca`).
    cluster_cert: PathBuf = PathBuf::new(), "GOIM_CLUSTER_CERT";
    /// Cluster mTLS: this node's private key (PEM).
    cluster_key: PathBuf = PathBuf::new(), "GOIM_CLUSTER_KEY";
    /// Log filter (tracing env-filter syntax).
    log: String = "info,openraft=warn,openraft::core::raft_core=error".into(), "GOIM_LOG";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Logic,
    Job,
    Comet,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Logic => "logic",
            Role::Job => "job",
            Role::Comet => "comet",
        }
    }
}

/// Items of a comma-separated list, trimmed, empty ones skipped.
fn items(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|item| !item.is_empty())
}

/// The roles a process runs (`--roles logic,job,comet`), parsed once; never empty.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Roles(Vec<Role>);

impl Roles {
    pub fn has(&self, role: Role) -> bool {
        self.0.contains(&role)
    }
}

impl FromStr for Roles {
    type Err = String;

    fn from_str(list: &str) -> Result<Roles, String> {
        let roles = items(list)
            .map(|r| match r {
                "logic" => Ok(Role::Logic),
                "job" => Ok(Role::Job),
                "comet" => Ok(Role::Comet),
                other => Err(format!("unknown role {other:?} (expected logic, job, comet)")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if roles.is_empty() {
            return Err("--roles is empty".into());
        }
        Ok(Roles(roles))
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|r| r.name()).collect();
        f.write_str(&names.join(","))
    }
}

/// The initial logic voters (`--peers 1=HOST:PORT,2=HOST:PORT`), parsed once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Peers(pub BTreeMap<u64, String>);

impl FromStr for Peers {
    type Err = String;

    fn from_str(list: &str) -> Result<Peers, String> {
        let mut peers = BTreeMap::new();
        for item in items(list) {
            let (id, addr) =
                item.split_once('=').ok_or_else(|| format!("peer {item:?} is not ID=HOST:PORT"))?;
            let id: u64 = id.trim().parse().map_err(|e| format!("peer id in {item:?}: {e}"))?;
            peers.insert(id, addr.trim().to_string());
        }
        Ok(Peers(peers))
    }
}

/// A comma-separated list of addresses (`--logic HOST:PORT,HOST:PORT`), parsed once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Addrs(pub Vec<String>);

impl FromStr for Addrs {
    type Err = String;

    fn from_str(list: &str) -> Result<Addrs, String> {
        Ok(Addrs(items(list).map(String::from).collect()))
    }
}

/// serde's side of the list types above: the TOML file writes them as the flags do.
macro_rules! try_from_string {
    ($($ty:ty),*) => {$(
        impl TryFrom<String> for $ty {
            type Error = String;

            fn try_from(list: String) -> Result<$ty, String> {
                list.parse()
            }
        }
    )*};
}

try_from_string!(Roles, Peers, Addrs);

impl Settings {
    /// Merges the TOML file (if any) under flags/env and fills in defaults.
    pub fn load(self) -> anyhow::Result<Config> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?;
                toml::from_str::<Settings>(&text)
                    .with_context(|| format!("parsing config {}", path.display()))?
            }
            None => Settings::default(),
        };
        let config = self.or(file).resolve();
        config.validate()?;
        Ok(config)
    }
}

impl Config {
    fn validate(&self) -> anyhow::Result<()> {
        crate::auth::ClientAuth::check_settings(self)?;
        if self.api_token_reads && self.api_token.trim().is_empty() {
            bail!("--api-token-reads needs --api-token");
        }
        let tls_files = [&self.cluster_ca, &self.cluster_cert, &self.cluster_key];
        let given = tls_files.iter().filter(|p| !p.as_os_str().is_empty()).count();
        if given != 0 && given != 3 {
            bail!("--cluster-ca, --cluster-cert and --cluster-key go together: give all three or none");
        }
        if self.tls_cert.as_os_str().is_empty() != self.tls_key.as_os_str().is_empty() {
            bail!("--tls-cert and --tls-key go together: give both or neither");
        }
        if self.max_body == 0 || self.max_body > (1 << 24) {
            bail!("max_body must be in 1..=16MiB");
        }
        if self.http_max_connections == 0 || self.listen_backlog == 0 {
            bail!("http_max_connections and listen_backlog must be at least 1");
        }
        if self.http_header_timeout_ms == 0
            || self.http_body_timeout_ms == 0
            || self.http_idle_timeout_ms == 0
        {
            bail!("the http_*_timeout_ms settings must be at least 1");
        }
        let needs_logic = self.has(Role::Comet) || self.has(Role::Job);
        if needs_logic && !self.has(Role::Logic) && self.logic_addrs().is_empty() {
            bail!("a comet or job without the logic role needs --logic HOST:PORT,...");
        }
        Ok(())
    }

    /// True when the cluster mTLS files are configured (validated: all three or none).
    pub fn cluster_mtls(&self) -> bool {
        !self.cluster_ca.as_os_str().is_empty()
    }

    /// True when client TLS is configured (validated: cert and key both given).
    pub fn client_tls(&self) -> bool {
        !self.tls_cert.as_os_str().is_empty()
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.has(role)
    }

    /// QUIC addresses comets and jobs call: this node itself when it runs logic (over
    /// QUIC all the same: one code path), else `--logic`.
    pub fn logic_addrs(&self) -> Vec<String> {
        let mut addrs = self.logic.0.clone();
        if self.has(Role::Logic) {
            addrs.insert(0, self.quic_addr.to_string());
        }
        addrs
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn flags(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("goim").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.settings.load().map_err(|e| e.to_string())
    }

    #[test]
    fn mib_flags_reach_storage_in_bytes_and_saturate() {
        let storage = |args: &[&str]| goim_raft::ClusterConfig::from(&flags(args).unwrap()).storage;
        let defaults = storage(&[]);
        assert_eq!((defaults.cache_bytes, defaults.snapshot_bytes_per_s), (32 << 20, 32 << 20));
        let set = storage(&["--sled-cache-mb", "8", "--snapshot-mb-per-s", "0"]);
        assert_eq!((set.cache_bytes, set.snapshot_bytes_per_s), (8 << 20, 0), "0: builds unlimited");
        let huge = u64::MAX.to_string();
        let huge = storage(&["--sled-cache-mb", &huge, "--snapshot-mb-per-s", &huge]);
        assert_eq!((huge.cache_bytes, huge.snapshot_bytes_per_s), (u64::MAX, u64::MAX));
    }

    #[test]
    fn lists_and_policies_are_parsed_once_into_types() {
        let cfg = flags(&[
            "--roles",
            " comet , job",
            "--peers",
            "1=10.0.0.1:3119, 2=10.0.0.2:3119",
            "--logic",
            "10.0.0.1:3119,,10.0.0.2:3119",
            "--slow-consumer",
            "drop",
        ])
        .unwrap();
        assert!(cfg.has(Role::Comet) && cfg.has(Role::Job) && !cfg.has(Role::Logic));
        assert_eq!(cfg.roles.to_string(), "comet,job");
        assert_eq!(cfg.peers.0.get(&2).map(String::as_str), Some("10.0.0.2:3119"));
        assert_eq!(cfg.logic_addrs(), ["10.0.0.1:3119", "10.0.0.2:3119"]);
        assert_eq!(cfg.slow_consumer, SlowConsumer::Drop);

        let all = flags(&[]).unwrap();
        assert_eq!(all.roles.to_string(), "logic,job,comet");
        assert_eq!(all.slow_consumer, SlowConsumer::Close);
        assert_eq!(all.logic_addrs(), [all.quic_addr.to_string()], "a logic node calls itself");
    }

    #[test]
    fn bad_lists_and_policies_are_refused_with_what_was_wrong() {
        assert!(flags(&["--roles", "logic,push"]).unwrap_err().contains("unknown role \"push\""));
        assert!(flags(&["--roles", " , "]).unwrap_err().contains("--roles is empty"));
        assert!(flags(&["--peers", "1=a:1,b:2"]).unwrap_err().contains("not ID=HOST:PORT"));
        assert!(flags(&["--peers", "x=a:1"]).unwrap_err().contains("peer id"));
        assert!(flags(&["--slow-consumer", "wait"]).is_err());
    }

    #[test]
    fn the_toml_file_writes_the_lists_as_the_flags_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("goim.toml");
        let toml = "roles = \"logic\"\npeers = \"1=127.0.0.1:3119\"\nslow_consumer = \"drop\"\n";
        std::fs::write(&path, toml).unwrap();
        let cfg = flags(&["--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(cfg.roles.to_string(), "logic");
        assert_eq!(cfg.peers.0.len(), 1);
        assert_eq!(cfg.slow_consumer, SlowConsumer::Drop);
        std::fs::write(&path, "roles = \"nothing\"\n").unwrap();
        assert!(flags(&["--config", path.to_str().unwrap()]).unwrap_err().contains("parsing config"));
    }
}
