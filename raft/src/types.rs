//! The openraft type configuration: u64 node ids, `BasicNode { addr }` holding the node's
//! QUIC address, commands `Request` replied to with `Reply`, snapshots as bytes.
use std::io::Cursor;

use crate::command::{Reply, Request};

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Request,
        R = Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
