//! The seam between the state machine (this crate) and the commands (the `raft` crate): a
//! command applies itself to the tables inside one atomic transaction. `apply` must be
//! deterministic: it may read only the tables and the command itself, never the clock.
use crate::tables::Txn;
use crate::StorageError;

pub trait Command: openraft::AppData + std::fmt::Debug {
    type Reply: openraft::AppDataResponse + Default + std::fmt::Debug;

    fn apply(&self, txn: &mut Txn<'_>) -> Result<Self::Reply, StorageError>;
}
