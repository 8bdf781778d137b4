//! Serves `Service::Raft` streams: hands each request to the local Raft and writes back
//! its result. Undecodable frames are counted and the stream reset (see `serve_unary`).
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use goim_net::quic::{serve_unary, BiStream, StreamHandler};

use super::message::{RaftRpc, RaftRpcReply};
use crate::cluster::Cluster;

pub struct RaftService {
    pub cluster: Arc<Cluster>,
}

impl StreamHandler for RaftService {
    fn handle(self: Arc<Self>, stream: BiStream) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(serve_unary(stream, "raft", move |rpc: RaftRpc| async move {
            let raft = &self.cluster.raft;
            match rpc {
                RaftRpc::Append(r) => {
                    self.cluster.heard.now();
                    RaftRpcReply::Append(raft.append_entries(r).await)
                }
                RaftRpc::Vote(r) => RaftRpcReply::Vote(raft.vote(r).await),
                RaftRpc::Snapshot(r) => RaftRpcReply::Snapshot(raft.install_snapshot(r).await),
                RaftRpc::Leader(op) => RaftRpcReply::Leader(self.cluster.run_local(op).await),
                RaftRpc::Status => RaftRpcReply::Status(self.cluster.local_status()),
            }
        }))
    }
}
