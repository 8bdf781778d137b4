//! Serves `Service::Raft` streams: hands each request to the local Raft and writes back
//! its result. Undecodable frames are counted and the stream reset (see `serve_unary`); a
//! consensus message addressed to another node id is refused (`To`), counted and logged.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use goim_net::quic::{serve_unary, BiStream, StreamHandler};
use goim_net::LogEvery;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, InstallSnapshotResponse};
use tokio::time::Instant;

use super::message::{RaftRpc, RaftRpcReply, To};
use crate::cluster::Cluster;
use crate::liveness::LastHeard;
use crate::types::{Raft, TypeConfig};

pub struct RaftService {
    pub cluster: Arc<Cluster>,
}

impl StreamHandler for RaftService {
    fn handle(self: Arc<Self>, stream: BiStream) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(serve_unary(stream, "raft", move |rpc: RaftRpc| async move {
            let raft = &self.cluster.raft;
            let me = self.cluster.node_id;
            if let Some(to) = rpc.addressed_to().filter(|to| *to != me) {
                misaddressed(me, to);
                return RaftRpcReply::Misaddressed(me);
            }
            match rpc {
                RaftRpc::Append(r) | RaftRpc::AppendTo(To { rpc: r, .. }) => {
                    self.cluster.heard.store(Instant::now());
                    let started = std::time::Instant::now();
                    let reply = raft.append_entries(r).await;
                    // The leader's bound on the whole round trip is the heartbeat interval.
                    metrics::histogram!("goim_raft_append_entries_seconds")
                        .record(started.elapsed().as_secs_f64());
                    RaftRpcReply::Append(reply)
                }
                RaftRpc::Vote(r) | RaftRpc::VoteTo(To { rpc: r, .. }) => {
                    RaftRpcReply::Vote(raft.vote(r).await)
                }
                RaftRpc::Snapshot(r) | RaftRpc::SnapshotTo(To { rpc: r, .. }) => {
                    RaftRpcReply::Snapshot(install_chunk(raft, &self.cluster.heard, r.into()).await)
                }
                RaftRpc::Leader(op) => RaftRpcReply::Leader(self.cluster.run_local(op).await),
                RaftRpc::Status => RaftRpcReply::Status(self.cluster.local_status()),
            }
        }))
    }
}

/// Counts a consensus message meant for node `to`, and says so at most once per 5 s: a
/// member still lists `to` at this node's address (`to`'s data was lost and this node was
/// started in its place before `to` was removed from the cluster).
fn misaddressed(me: u64, to: u64) {
    static LOG: LogEvery = LogEvery::new(Duration::from_secs(5));
    metrics::counter!("goim_raft_misaddressed_total").increment(1);
    if let Some(suppressed) = LOG.allow() {
        tracing::warn!(
            node = me,
            addressed_to = to,
            suppressed,
            "refused a Raft message for node {to}: this is node {me}. A member lists node {to} at this address; if node {to} is gone, remove it from the cluster"
        );
    }
}

/// One snapshot chunk, which also stands for the leader's heartbeats while it is handled.
///
/// openraft 0.9 sends a follower no heartbeat while it streams it a snapshot (a target with
/// data in flight gets none), and a follower's election timer is reset only by AppendEntries
/// and votes, not by snapshot chunks. A transfer longer than the election timeout (plus the
/// install, which runs inside the last chunk's RPC) made the follower stand for election,
/// the leader step down and the transfer start over, again and again: a follower needing a
/// snapshot of 100k records never caught up. So when a chunk arrives, and every heartbeat
/// interval while it is received and installed, the local Raft gets the empty AppendEntries
/// the leader would have sent (the chunk's vote, nothing to match, nothing to commit): it
/// only renews the leader's lease here, and is refused like the chunk itself if the vote is
/// stale. Each is sent on its own task: its answer may wait for the install to finish (the
/// Raft core answers in order), the renewal does not. Each also counts as hearing from the
/// leader for the liveness trigger (`heard`), as a real AppendEntries does.
async fn install_chunk(
    raft: &Raft,
    heard: &LastHeard,
    chunk: InstallSnapshotRequest<TypeConfig>,
) -> Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> {
    let heartbeat = AppendEntriesRequest {
        vote: chunk.vote,
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let beat = || {
        heard.store(Instant::now());
        let (raft, heartbeat) = (raft.clone(), heartbeat.clone());
        // A refusal (a newer vote here) is the chunk's answer too; nothing to do with it.
        tokio::spawn(async move { raft.append_entries(heartbeat).await });
    };
    beat();
    let every = Duration::from_millis(raft.config().heartbeat_interval);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let install = raft.install_snapshot(chunk);
    tokio::pin!(install);
    loop {
        tokio::select! {
            done = &mut install => return done,
            _ = ticks.tick() => beat(),
        }
    }
}
