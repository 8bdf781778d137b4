//! openraft's `RaftNetworkFactory` / `RaftNetwork` over QUIC. Connections are made on first
//! use and remade after failures by the endpoint; an unreachable peer is reported as
//! `Unreachable` so openraft backs off instead of spinning. Also `call_as`, the typed call
//! the node's own requests (forwarded writes, member status) make on the Raft stream.
use std::sync::Arc;
use std::time::Duration;

use goim_net::quic::{QuicEndpoint, QuicError};
use goim_net::rpc::Service;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use super::message::{RaftRpc, RaftRpcReply};
use crate::check_quorum::Quiet;
use crate::types::TypeConfig;

/// One request on a peer's Raft stream, its reply matched once by `pick`; a reply of
/// another kind (a version mismatch or a bug) is an error naming it, as is a transport
/// failure.
pub async fn call_as<T>(
    endpoint: &QuicEndpoint,
    addr: &str,
    rpc: &RaftRpc,
    timeout: Duration,
    pick: impl FnOnce(RaftRpcReply) -> Result<T, Box<RaftRpcReply>>,
) -> Result<T, String> {
    let reply = endpoint.call::<RaftRpc, RaftRpcReply>(addr, Service::Raft, rpc, timeout).await;
    pick(reply.map_err(|e| e.to_string())?).map_err(|other| format!("{addr} answered {other:?}"))
}

#[derive(Clone)]
pub struct QuicNetwork {
    endpoint: Arc<QuicEndpoint>,
    quiet: Arc<Quiet>,
}

impl QuicNetwork {
    /// `quiet`: while set, this node (a leader no quorum acknowledges) replicates nothing.
    pub fn new(endpoint: Arc<QuicEndpoint>, quiet: Arc<Quiet>) -> Self {
        QuicNetwork { endpoint, quiet }
    }
}

impl RaftNetworkFactory<TypeConfig> for QuicNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        PeerClient {
            endpoint: self.endpoint.clone(),
            quiet: self.quiet.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

pub struct PeerClient {
    endpoint: Arc<QuicEndpoint>,
    quiet: Arc<Quiet>,
    target: u64,
    addr: String,
}

type RpcErr<E> = RPCError<u64, BasicNode, RaftError<u64, E>>;

impl PeerClient {
    /// A stranded leader's replication is held back (`check_quorum`): reported as
    /// `Unreachable`, so openraft backs off instead of retrying at once.
    // The error type is openraft's, fixed by the `RaftNetwork` signatures.
    #[allow(clippy::result_large_err)]
    fn held_back<E: std::error::Error>(&self) -> Result<(), RpcErr<E>> {
        if !self.quiet.is_quiet() {
            return Ok(());
        }
        let why = std::io::Error::other("keeping quiet: no quorum acknowledged this leader");
        Err(RPCError::Unreachable(Unreachable::new(&why)))
    }

    async fn call<E: std::error::Error>(
        &self,
        rpc: RaftRpc,
        option: &RPCOption,
    ) -> Result<RaftRpcReply, RpcErr<E>> {
        let reply = self
            .endpoint
            .call::<RaftRpc, RaftRpcReply>(&self.addr, Service::Raft, &rpc, option.hard_ttl())
            .await;
        match reply {
            Ok(RaftRpcReply::Bad(msg)) => {
                Err(RPCError::Network(NetworkError::new(&std::io::Error::other(msg))))
            }
            Ok(r) => Ok(r),
            // Only a peer we cannot even dial is `Unreachable` (openraft then backs off);
            // a slow reply is transient and retried at once.
            Err(e @ (QuicError::Connect(_) | QuicError::Resolve(..) | QuicError::DialTimeout(_))) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    // The error type is openraft's, fixed by the `RaftNetwork` signatures.
    #[allow(clippy::result_large_err)]
    fn remote<T, E: std::error::Error>(&self, r: Result<T, RaftError<u64, E>>) -> Result<T, RpcErr<E>> {
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

fn mismatch<E: std::error::Error>() -> RpcErr<E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other("mismatched raft reply")))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcErr<openraft::error::Infallible>> {
        self.held_back()?;
        match self.call(RaftRpc::Append(rpc), &option).await? {
            RaftRpcReply::Append(r) => self.remote(r),
            _ => Err(mismatch()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcErr<InstallSnapshotError>> {
        self.held_back()?;
        match self.call(RaftRpc::Snapshot(rpc.into()), &option).await? {
            RaftRpcReply::Snapshot(r) => self.remote(r),
            _ => Err(mismatch()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcErr<openraft::error::Infallible>> {
        match self.call(RaftRpc::Vote(rpc), &option).await? {
            RaftRpcReply::Vote(r) => self.remote(r),
            _ => Err(mismatch()),
        }
    }
}
