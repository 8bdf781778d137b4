//! The logic role: the cluster's front door. It turns comet RPCs (`rpc`) and HTTP pushes
//! (`http`) into Raft commands, serves the push log to jobs (`tail`), and, while leading,
//! proposes the clock that expires dead comets (`ticker`).
mod history;
pub mod http;
mod rpc;
mod tail;
mod ticker;

use std::sync::Arc;

use goim_net::api::TargetLimits;
use goim_net::quic::QuicEndpoint;
use goim_net::rpc::logic::CometInfo;
use goim_net::rpc::Service;
use goim_raft::command::{Push, PushBatch, PushTo, Pushed};
use goim_raft::{Cluster, ClusterConfig, WriteError};
use goim_storage::tables::{comets, requests};
use tokio_util::sync::CancellationToken;

use crate::auth::ApiAuth;
use crate::clock::now_ms;
use crate::config::Config;

pub struct Logic {
    pub cluster: Arc<Cluster>,
    pub heartbeat_secs: u64,
    /// The WSS port `/goim/nodes/weighted` tells clients (goim's `wss_port`): this node's
    /// `--wss-addr` port when it has client TLS, else 0.
    pub wss_port: u16,
    pub comet_ttl_ms: u64,
    pub chat_op: i32,
    pub max_push_body: usize,
    /// Most keys or mids one push may name.
    pub max_push_targets: usize,
    /// Longest key and room id a push may name (as clients may hold or join).
    pub max_key_len: usize,
    pub max_room_len: usize,
    pub retention_records: u64,
    pub retention_ms: u64,
    /// Per-room history window: messages, and age.
    pub room_retention_records: u64,
    pub room_retention_ms: u64,
    /// Fault testing only: pushes are acknowledged before they commit (see `config`).
    pub unsafe_ack_before_commit: bool,
    /// The HTTP API's bearer token (`--api-token`).
    pub api_auth: ApiAuth,
}

/// One message to push, as the HTTP API and chat mode hand it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub to: PushTo,
    pub op: i32,
    pub body: bytes::Bytes,
    /// The client's idempotency key, if it gave one.
    pub key: Option<String>,
}

impl Message {
    /// The `Push` command, stamped `ts_ms`, its request id from the key (or a fresh one).
    fn into_push(self, ts_ms: u64, room_keep: u64) -> Push {
        let id = match &self.key {
            Some(k) => requests::client_id(k),
            None => requests::generated_id(ts_ms, rand::random()),
        };
        Push { id, to: self.to, op: self.op, body: self.body, ts_ms, room_keep }
    }
}

impl From<&Config> for ClusterConfig {
    /// This node's Raft settings.
    fn from(cfg: &Config) -> ClusterConfig {
        let mut rc = ClusterConfig::new(cfg.node_id, cfg.data_dir.clone(), cfg.quic_addr.to_string());
        rc.peers = cfg.peers.0.clone();
        rc.heartbeat_ms = cfg.raft_heartbeat_ms;
        rc.election_min_ms = cfg.raft_election_min_ms;
        rc.election_max_ms = cfg.raft_election_max_ms;
        rc.snapshot_every = cfg.snapshot_every;
        rc.storage = goim_storage::StorageConfig {
            cache_bytes: cfg.sled_cache_mb.saturating_mul(1 << 20),
            snapshot_bytes_per_s: cfg.snapshot_mb_per_s.saturating_mul(1 << 20),
        };
        rc.batches_in_flight = cfg.raft_batches_in_flight;
        let roles = cfg.roles.to_string();
        rc.about = serde_json::json!({ "roles": roles, "http": cfg.http_addr.to_string() }).to_string();
        rc
    }
}

impl Logic {
    pub fn start(
        cfg: &Config,
        cluster: Arc<Cluster>,
        endpoint: &QuicEndpoint,
        shutdown: CancellationToken,
    ) -> Arc<Logic> {
        let logic = Arc::new(Logic {
            cluster,
            heartbeat_secs: cfg.heartbeat_secs,
            wss_port: if cfg.client_tls() { cfg.wss_addr.port() } else { 0 },
            comet_ttl_ms: cfg.comet_ttl_ms,
            chat_op: cfg.chat_op,
            max_push_body: cfg.max_push_body,
            max_push_targets: cfg.max_push_targets,
            max_key_len: cfg.max_key_len,
            max_room_len: cfg.max_room_len,
            retention_records: cfg.retention_records,
            retention_ms: cfg.retention_ms,
            room_retention_records: cfg.room_retention_records,
            room_retention_ms: cfg.room_retention_ms,
            unsafe_ack_before_commit: cfg.unsafe_ack_before_commit,
            api_auth: ApiAuth::new(&cfg.api_token, cfg.api_token_reads),
        });
        if logic.unsafe_ack_before_commit {
            tracing::warn!(
                "UNSAFE MODE (--unsafe-ack-before-commit): pushes are acknowledged before they are \
                 committed; acknowledged pushes CAN BE LOST. For fault testing only."
            );
        }
        endpoint.register(Service::Logic, Arc::new(rpc::LogicService(logic.clone())));
        endpoint.register(Service::Tail, Arc::new(tail::TailService(logic.clone())));
        tokio::spawn(ticker::run(logic.clone(), shutdown));
        logic
    }

    /// Commits a push. Its idempotency key (the client's, if it gave one) makes retries safe;
    /// without one a fresh id still protects the forwards and retries inside the cluster.
    pub async fn push(&self, msg: Message) -> Result<Pushed, WriteError> {
        self.cluster.propose(msg.into_push(now_ms(), self.room_retention_records)).await
    }

    /// Commits many pushes as one write (`PushBatch`): all or none, applied in order, each
    /// once per id. Answers one outcome per message, in order.
    pub async fn push_batch(&self, msgs: Vec<Message>) -> Result<Vec<Pushed>, WriteError> {
        let ts_ms = now_ms();
        let pushes = msgs.into_iter().map(|m| m.into_push(ts_ms, self.room_retention_records)).collect();
        self.cluster.propose(PushBatch(pushes)).await
    }

    /// What one push may name (`--max-push-targets`, `--max-key-len`, `--max-room-len`).
    pub fn target_limits(&self) -> TargetLimits {
        TargetLimits {
            targets: self.max_push_targets,
            key_len: self.max_key_len,
            room_len: self.max_room_len,
        }
    }

    /// Comets whose registration has not expired, by the local clock.
    pub fn live_comets(&self) -> Result<Vec<comets::CometState>, goim_storage::StorageError> {
        let now = now_ms();
        Ok(comets::list(&self.cluster.view)?.into_iter().filter(|c| c.is_live(now)).collect())
    }

    /// Every registered comet, expired ones included, for jobs. Not filtered by this node's
    /// clock: a lagging node would see every comet as expired; `Tick` (on the leader)
    /// decides, and a job still pushes to an expired comet that answers.
    pub fn comet_infos(&self) -> Result<Vec<CometInfo>, goim_storage::StorageError> {
        Ok(comets::list(&self.cluster.view)?.into_iter().map(|c| c.info).collect())
    }
}
