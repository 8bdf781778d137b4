//! Job → comet: an ordered stream of push batches on one QUIC bi-stream; the comet acks
//! each batch after handing it to its connections. One batch is the aggregation unit: the
//! comet turns the room records of a batch into one op-9 frame per room.
use serde::{Deserialize, Serialize};

use super::record::{Partition, PushRecord};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushBatch {
    pub partition: Partition,
    /// Records in seq order; only those that concern the receiving comet.
    pub records: Vec<PushRecord>,
    /// Highest seq this batch covers (records for other comets may have been left out).
    pub last_seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushAck {
    pub partition: Partition,
    pub last_seq: u64,
}
