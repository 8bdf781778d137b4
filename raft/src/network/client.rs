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

use super::message::{RaftRpc, RaftRpcReply, To};
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
            earlier_version: false,
        }
    }
}

pub struct PeerClient {
    endpoint: Arc<QuicEndpoint>,
    quiet: Arc<Quiet>,
    target: u64,
    addr: String,
    /// The peer could not read a message naming its recipient (`To`): it runs an earlier
    /// version, and is sent the unaddressed messages it knows until this client is remade.
    earlier_version: bool,
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
        &mut self,
        rpc: RaftRpc,
        option: &RPCOption,
    ) -> Result<RaftRpcReply, RpcErr<E>> {
        let rpc = if self.earlier_version { rpc.unaddressed() } else { rpc };
        let (endpoint, addr, ttl) = (&self.endpoint, self.addr.as_str(), option.hard_ttl());
        let send =
            async |rpc: &RaftRpc| endpoint.call::<RaftRpc, RaftRpcReply>(addr, Service::Raft, rpc, ttl).await;
        let mut reply = send(&rpc).await;
        if rpc.addressed_to().is_some() && reply.as_ref().is_err_and(QuicError::is_undecodable_request) {
            tracing::info!(
                target = self.target,
                addr = %self.addr,
                "the peer runs an earlier version: Raft messages to it name no recipient until it is upgraded"
            );
            self.earlier_version = true;
            reply = send(&rpc.unaddressed()).await;
        }
        match reply {
            Ok(RaftRpcReply::Bad(msg)) => {
                Err(RPCError::Network(NetworkError::new(&std::io::Error::other(msg))))
            }
            // Another node has the target's address: as good as unreachable (openraft backs
            // off), and nothing it says counts for the target.
            Ok(RaftRpcReply::Misaddressed(there)) => {
                let why = format!(
                    "the process at {} is node {there}, not node {}: the target's data was lost and a new node took its address? Remove node {} from the cluster",
                    self.addr, self.target, self.target
                );
                Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(why))))
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
        match self.call(RaftRpc::AppendTo(To { node: self.target, rpc }), &option).await? {
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
        match self.call(RaftRpc::SnapshotTo(To { node: self.target, rpc: rpc.into() }), &option).await? {
            RaftRpcReply::Snapshot(r) => self.remote(r),
            _ => Err(mismatch()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcErr<openraft::error::Infallible>> {
        match self.call(RaftRpc::VoteTo(To { node: self.target, rpc }), &option).await? {
            RaftRpcReply::Vote(r) => self.remote(r),
            _ => Err(mismatch()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU32, Ordering};

    use goim_net::quic::{serve_unary, BiStream, ClusterTls, StreamHandler};
    use openraft::Vote;
    use serde::Deserialize;

    use super::*;
    use crate::network::message::LeaderOp;
    use crate::network::snapshot_chunk::SnapshotChunk;

    /// The Raft messages of nodes before `To`, in their order.
    #[allow(dead_code)] // only decoded
    #[derive(Deserialize)]
    enum EarlierRpc {
        Append(AppendEntriesRequest<TypeConfig>),
        Vote(VoteRequest<u64>),
        Snapshot(SnapshotChunk),
        Leader(LeaderOp),
        Status,
    }

    /// A Raft service as an earlier version serves it: it grants every vote it can read.
    #[derive(Default)]
    struct EarlierPeer {
        votes: AtomicU32,
    }

    impl StreamHandler for EarlierPeer {
        fn handle(self: Arc<Self>, stream: BiStream) -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(serve_unary(stream, "raft", move |rpc: EarlierRpc| async move {
                match rpc {
                    EarlierRpc::Vote(v) => {
                        self.votes.fetch_add(1, Ordering::Relaxed);
                        RaftRpcReply::Vote(Ok(VoteResponse::new(v.vote, None, true)))
                    }
                    _ => RaftRpcReply::Bad("not in this test".into()),
                }
            }))
        }
    }

    #[tokio::test]
    async fn a_peer_of_an_earlier_version_is_sent_the_messages_it_knows() {
        let any = || "127.0.0.1:0".parse().unwrap();
        let server = QuicEndpoint::bind(any(), &ClusterTls::generate().unwrap()).unwrap();
        let earlier = Arc::new(EarlierPeer::default());
        server.register(Service::Raft, earlier.clone());
        let client = QuicEndpoint::bind(any(), &ClusterTls::generate().unwrap()).unwrap();
        let mut network = QuicNetwork::new(client, Quiet::new());
        let at = BasicNode::new(server.local_addr().unwrap().to_string());
        let mut peer = network.new_client(2, &at).await;
        for term in [3, 4] {
            let request = VoteRequest::new(Vote::new(term, 1), None);
            let reply = peer.vote(request, RPCOption::new(Duration::from_secs(5))).await.expect("a reply");
            assert!(reply.vote_granted, "term {term}");
        }
        assert_eq!(earlier.votes.load(Ordering::Relaxed), 2);
        assert!(peer.earlier_version, "told apart once, remembered after");
    }
}
