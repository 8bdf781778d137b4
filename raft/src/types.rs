//! The openraft type configuration: u64 node ids, `BasicNode { addr }` holding the node's
//! QUIC address, commands `Request` replied to with `Reply`, snapshots as files (sent to
//! followers in chunks of `snapshot_max_chunk_size`, see `cluster`).
use goim_storage::SnapshotFile;

use crate::command::{Reply, Request};

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Request,
        R = Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
);

pub type Raft = openraft::Raft<TypeConfig>;
