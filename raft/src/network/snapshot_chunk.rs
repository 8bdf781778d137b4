//! A snapshot chunk as it travels on the Raft stream. openraft's `InstallSnapshotRequest`
//! serializes its data as a sequence of numbers, one codec call per byte: about a third of
//! a second per MiB each way on a debug build, long enough for a follower receiving a
//! snapshot to miss its election timeout. Here the same fields go with the data as one byte
//! string (a length, then the bytes), a copy each way.
use std::fmt;

use openraft::raft::InstallSnapshotRequest;
use openraft::{BasicNode, SnapshotMeta, Vote};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::types::TypeConfig;

#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    vote: Vote<u64>,
    meta: SnapshotMeta<u64, BasicNode>,
    offset: u64,
    done: bool,
    #[serde(serialize_with = "byte_string", deserialize_with = "byte_buf")]
    data: Vec<u8>,
}

impl From<InstallSnapshotRequest<TypeConfig>> for SnapshotChunk {
    fn from(r: InstallSnapshotRequest<TypeConfig>) -> Self {
        SnapshotChunk { vote: r.vote, meta: r.meta, offset: r.offset, done: r.done, data: r.data }
    }
}

impl From<SnapshotChunk> for InstallSnapshotRequest<TypeConfig> {
    fn from(c: SnapshotChunk) -> Self {
        InstallSnapshotRequest { vote: c.vote, meta: c.meta, offset: c.offset, data: c.data, done: c.done }
    }
}

fn byte_string<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(data)
}

fn byte_buf<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    d.deserialize_byte_buf(BytesVisitor)
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use goim_net::serial;
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    use super::*;
    use crate::network::{RaftRpc, To};

    /// A chunk crosses the codec whole, its data as bytes: a few bytes over its length.
    #[test]
    fn chunk_data_is_one_byte_string() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let request = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 42)),
                last_membership: StoredMembership::default(),
                snapshot_id: "3-42-1".into(),
            },
            offset: 1 << 20,
            data: data.clone(),
            done: true,
        };
        let encoded = serial::encode(&RaftRpc::SnapshotTo(To { node: 2, rpc: request.into() })).unwrap();
        assert!(encoded.len() < data.len() + 100, "{} bytes for {}", encoded.len(), data.len());
        let RaftRpc::SnapshotTo(chunk) = serial::decode(&encoded).unwrap() else { panic!("not a chunk") };
        assert_eq!(chunk.node, 2);
        let back: InstallSnapshotRequest<TypeConfig> = chunk.rpc.into();
        assert_eq!((back.offset, back.done, back.meta.snapshot_id.as_str()), (1 << 20, true, "3-42-1"));
        assert_eq!(back.data, data);
    }
}
