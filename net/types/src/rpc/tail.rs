//! Job ← logic: a streaming read of the push log. The job sends one `TailRequest`; the
//! logic node answers with `TailBatch` frames as records are applied, until either side
//! closes. Served by any logic node from its applied state.
use serde::{Deserialize, Serialize};

use super::record::{Partition, PushRecord};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailRequest {
    pub partition: Partition,
    /// First seq wanted.
    pub from_seq: u64,
    /// Most records in one batch frame.
    pub max_batch: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TailBatch {
    Records(Vec<PushRecord>),
    /// `from_seq` is older than the retained log: the oldest retained seq is given.
    Trimmed {
        first_seq: u64,
    },
}
