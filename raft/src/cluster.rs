//! A logic node's Raft member: opens the sled store, starts openraft on the QUIC network,
//! forms the cluster from the configured voters exactly once, and offers `write`, which
//! commits a command on whichever node leads (forwarding and retrying across elections).
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use goim_net::quic::QuicEndpoint;
use goim_net::rpc::Service;
use goim_storage::{StateView, StorageConfig};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, SnapshotPolicy};
use tracing::{info, warn};

use crate::check_quorum::{self, CheckQuorum, Quiet};
use crate::command::{Reply, Request, Write};
use crate::liveness::{self, LastHeard, Liveness};
use crate::membership::{self, MembershipChange, MembershipView};
use crate::network::{
    call_as, LeaderOp, LeaderReply, QuicNetwork, RaftRpc, RaftRpcReply, RaftService, WriteError,
};
use crate::proposer::{self, Proposer};
use crate::types::{Raft, TypeConfig};

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: u64,
    pub data_dir: PathBuf,
    /// Initial voters: node id → QUIC address. Empty = a cluster of this node alone.
    pub peers: BTreeMap<u64, String>,
    /// This node's own QUIC address as peers should dial it.
    pub advertise: String,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot (and purge the log before it) every this many entries.
    pub snapshot_every: u64,
    /// How the sled store is run (its cache size).
    pub storage: StorageConfig,
    /// How long `write` keeps retrying while there is no reachable leader.
    pub write_timeout: Duration,
    /// Write batches committing at once (see `proposer`).
    pub batches_in_flight: usize,
    /// What this node says about itself when a member asks its status (`status`).
    pub about: String,
}

impl ClusterConfig {
    pub fn new(node_id: u64, data_dir: PathBuf, advertise: String) -> Self {
        ClusterConfig {
            node_id,
            data_dir,
            peers: BTreeMap::new(),
            advertise,
            heartbeat_ms: 100,
            election_min_ms: 200,
            election_max_ms: 400,
            snapshot_every: 20_000,
            storage: StorageConfig::default(),
            write_timeout: Duration::from_secs(5),
            batches_in_flight: 2,
            about: String::new(),
        }
    }
}

pub struct Cluster {
    pub raft: Raft,
    pub view: StateView,
    pub node_id: u64,
    pub(crate) endpoint: Arc<QuicEndpoint>,
    pub(crate) about: String,
    write_timeout: Duration,
    election_max_ms: u64,
    proposer: Proposer,
    /// When a leader was last heard from (the liveness trigger waits out its lease).
    pub(crate) heard: Arc<LastHeard>,
    _liveness: Liveness,
    _check_quorum: CheckQuorum,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("storage: {0}")]
    Storage(#[from] goim_storage::StorageError),
    #[error("raft config: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("raft: {0}")]
    Fatal(#[from] openraft::error::Fatal<u64>),
    #[error("initialize: {0}")]
    Initialize(#[from] RaftError<u64, InitializeError<u64, BasicNode>>),
}

impl Cluster {
    pub async fn start(cfg: ClusterConfig, endpoint: Arc<QuicEndpoint>) -> Result<Arc<Cluster>, StartError> {
        let config = openraft::Config {
            cluster_name: "goim".into(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_min_ms,
            election_timeout_max: cfg.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
            max_in_snapshot_log_to_keep: 1_000,
            // openraft bounds every AppendEntries by the heartbeat interval: keep payloads
            // small enough to replicate within it on a busy machine (batches are <= 256 KiB).
            max_payload_entries: 16,
            // A snapshot is sent in chunks read from its file, each its own RPC bounded by
            // this timeout; the last one also waits for the follower to install the whole
            // snapshot: give it time on a busy machine. Chunks stand for the leader's
            // heartbeats on the follower (`network::server`): small enough to arrive well
            // within an election timeout, even on a debug build.
            snapshot_max_chunk_size: 512 << 10,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()?;
        let (log, sm) = goim_storage::open::<TypeConfig>(&cfg.data_dir, cfg.storage).await?;
        let view = sm.view();
        let quiet = Quiet::new();
        let network = QuicNetwork::new(endpoint.clone(), quiet.clone());
        let raft = Raft::new(cfg.node_id, Arc::new(config), network, log, sm).await?;
        let check_quorum = check_quorum::watch(
            raft.clone(),
            quiet,
            check_quorum::Timing::from_lease(Duration::from_millis(cfg.election_max_ms)),
        );
        let heard = Arc::new(LastHeard::new());
        let timing = liveness::Timing {
            lease: Duration::from_millis(cfg.election_max_ms),
            stagger: Duration::from_millis(cfg.heartbeat_ms),
        };
        let liveness =
            Liveness::start(raft.clone(), endpoint.clone(), cfg.node_id, heard.clone(), timing).await;
        let (proposer, proposals) = Proposer::new(proposer::QUEUE);
        let cluster = Arc::new(Cluster {
            raft,
            view,
            node_id: cfg.node_id,
            endpoint: endpoint.clone(),
            about: cfg.about.clone(),
            write_timeout: cfg.write_timeout,
            election_max_ms: cfg.election_max_ms,
            proposer,
            heard,
            _liveness: liveness,
            _check_quorum: check_quorum,
        });
        tokio::spawn(proposer::run(Arc::downgrade(&cluster), proposals, cfg.batches_in_flight));
        endpoint.register(Service::Raft, Arc::new(RaftService { cluster: cluster.clone() }));

        let mut voters = cfg.peers.clone();
        if voters.is_empty() {
            voters.insert(cfg.node_id, cfg.advertise.clone());
        }
        // The lowest id of the initial voters forms the cluster; everyone else joins when
        // it replicates to them. openraft refuses a second initialisation (restart), fine.
        // A node not among the voters waits to be added (`goim cluster add`).
        if voters.keys().next() == Some(&cfg.node_id) {
            let members: BTreeMap<u64, BasicNode> =
                voters.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
            match cluster.raft.initialize(members).await {
                Ok(()) => {
                    info!(node = cfg.node_id, voters = ?voters.keys().collect::<BTreeSet<_>>(), "cluster initialized")
                }
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(cluster)
    }

    /// The leader this node trusts right now. A node that believes it leads but has not
    /// heard from a quorum within an election timeout (e.g. a restarted ex-leader) does not
    /// count: it cannot commit, so writes must not wait on it.
    pub fn leader(&self) -> Option<u64> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader?;
        if leader != self.node_id {
            return Some(leader);
        }
        let alone = m.membership_config.membership().voter_ids().all(|id| id == self.node_id);
        let quorum_recent = m.millis_since_quorum_ack.is_some_and(|ms| ms <= self.election_max_ms);
        (alone || quorum_recent).then_some(leader)
    }

    /// Commits `req` (batched with concurrent writes) through the leader and returns its
    /// reply once applied; retries while no leader is known or reachable, up to the write
    /// timeout. Only idempotent commands are retried blindly: pushes carry request ids.
    pub async fn write(&self, req: Request) -> Result<Reply, WriteError> {
        self.proposer.propose(req).await
    }

    /// As `write`, for one command, answered in its own type (`Write`); a command its apply
    /// refused is `WriteError::Rejected`.
    pub async fn propose<C: Write>(&self, cmd: C) -> Result<C::Out, WriteError> {
        match self.write(cmd.into()).await? {
            Reply::Refused(why) => Err(WriteError::Rejected(why)),
            reply => C::out(reply).map_err(|other| {
                WriteError::Fatal(format!("{} answered {other:?}", std::any::type_name::<C>()))
            }),
        }
    }

    /// Commits one entry through the leader, forwarding and retrying across elections.
    pub(crate) async fn commit(&self, req: Request) -> Result<Reply, WriteError> {
        self.on_leader_as(LeaderOp::Write(req), |r| match r {
            LeaderReply::Write(r) => Ok(r),
            other => Err(other),
        })
        .await
    }

    /// Changes the membership through the leader (see `membership`).
    pub async fn change_membership(&self, change: MembershipChange) -> Result<MembershipView, WriteError> {
        self.on_leader_as(LeaderOp::Membership(change), |r| match r {
            LeaderReply::Membership(m) => Ok(m),
            other => Err(other),
        })
        .await
    }

    /// `on_leader`, its reply matched once by `pick`; a reply of another kind (a version
    /// mismatch or a bug) is fatal.
    async fn on_leader_as<T>(
        &self,
        op: LeaderOp,
        pick: impl FnOnce(LeaderReply) -> Result<T, LeaderReply>,
    ) -> Result<T, WriteError> {
        pick(self.on_leader(op).await?)
            .map_err(|other| WriteError::Fatal(format!("the leader answered {other:?}")))
    }

    /// Runs `op` on the leader: here when this node leads, else forwarded to it; retried
    /// while no leader is known or reachable, up to the write timeout.
    async fn on_leader(&self, op: LeaderOp) -> Result<LeaderReply, WriteError> {
        let deadline = Instant::now() + self.write_timeout;
        let mut backoff = Duration::from_millis(20);
        loop {
            let result = match self.leader_addr() {
                Some((_, None)) => self.run_local(op.clone()).await,
                Some((leader, Some(addr))) => {
                    // A forward to a leader that just died would wait for its timeout;
                    // give up on it as soon as this node sees another leader (or none).
                    tokio::select! {
                        r = self.forward(&addr, &op) => r,
                        _ = self.leader_changed_from(leader) => Err(WriteError::Transport("leader changed".into())),
                    }
                }
                None => Err(WriteError::NoLeader),
            };
            match result {
                Err(WriteError::ForwardToLeader(..) | WriteError::NoLeader | WriteError::Transport(_))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                Err(WriteError::ForwardToLeader(..) | WriteError::NoLeader) => {
                    return Err(WriteError::Timeout)
                }
                other => return other,
            }
        }
    }

    /// The trusted leader and its address (`None` when it is this node).
    fn leader_addr(&self) -> Option<(u64, Option<String>)> {
        let leader = self.leader()?;
        if leader == self.node_id {
            return Some((leader, None));
        }
        let metrics = self.raft.metrics();
        let addr = metrics.borrow().membership_config.membership().get_node(&leader).map(|n| n.addr.clone());
        addr.map(|a| (leader, Some(a)))
    }

    /// Resolves once this node's view of the leader is no longer `leader`.
    async fn leader_changed_from(&self, leader: u64) {
        let mut metrics = self.raft.metrics();
        loop {
            if metrics.borrow_and_update().current_leader != Some(leader) {
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    async fn forward(&self, addr: &str, op: &LeaderOp) -> Result<LeaderReply, WriteError> {
        let rpc = RaftRpc::Leader(op.clone());
        let pick = |reply| match reply {
            RaftRpcReply::Leader(r) => Ok(r),
            other => Err(Box::new(other)),
        };
        call_as(&self.endpoint, addr, &rpc, self.write_timeout, pick).await.map_err(WriteError::Transport)?
    }

    /// Runs `op` on this node; a follower answers where the leader is.
    pub(crate) async fn run_local(&self, op: LeaderOp) -> Result<LeaderReply, WriteError> {
        match op {
            LeaderOp::Write(req) => self.write_local(req).await.map(LeaderReply::Write),
            LeaderOp::Membership(change) => {
                membership::change_local(&self.raft, change).await.map(LeaderReply::Membership)
            }
        }
    }

    async fn write_local(&self, req: Request) -> Result<Reply, WriteError> {
        match self.raft.client_write(req).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                match (f.leader_id, f.leader_node) {
                    (Some(id), Some(node)) => Err(WriteError::ForwardToLeader(id, node.addr)),
                    _ => Err(WriteError::NoLeader),
                }
            }
            Err(e) => {
                warn!(error = %e, "raft write failed");
                Err(WriteError::Fatal(e.to_string()))
            }
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            warn!(error = %e, "raft shutdown");
        }
    }
}
