//! Durable state of a logic node, in one sled db: the Raft log and vote (`log_store`), the
//! replicated state machine (`state_machine`: sessions, comets and their online counts, the
//! push log, job offsets and leases, all under `tables`; its tree replaced whole when a
//! snapshot is installed, `state_tree`) and its snapshots (`snapshot`: files beside the db).
//! Commands are defined by the `raft` crate; they reach the tables through `Command`.
//! Opening verifies all of it (`recovery`) against a durability witness kept beside the db
//! (`witness`, `durable`): damaged files are refused, never served.
mod blobs;
mod command;
mod durable;
mod error;
mod log_store;
mod log_writer;
mod recovery;
mod snapshot;
mod state_machine;
mod state_tree;
pub mod tables;
#[cfg(test)]
mod tests;
mod witness;

pub use command::Command;
pub use error::StorageError;
pub use log_store::LogStore;
pub use snapshot::SnapshotFile;
pub use state_machine::{off_the_async_threads, StateMachine, StateView};

use std::path::Path;

use openraft::{BasicNode, RaftTypeConfig};

/// The Raft type configurations this crate stores: u64 node ids, `BasicNode` (its `addr` is
/// the node's QUIC address), openraft's `Entry`, snapshots as files, commands as `Command`.
pub trait GoimTypes:
    RaftTypeConfig<NodeId = u64, Node = BasicNode, Entry = openraft::Entry<Self>, SnapshotData = SnapshotFile>
{
}

impl<C> GoimTypes for C where
    C: RaftTypeConfig<
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<C>,
        SnapshotData = SnapshotFile,
    >
{
}

/// How the node's storage is run.
#[derive(Debug, Clone, Copy)]
pub struct StorageConfig {
    /// sled's page cache, in bytes (sled's own default is 1 GB).
    pub cache_bytes: u64,
    /// How fast a snapshot build writes its file (0: unlimited).
    pub snapshot_bytes_per_s: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { cache_bytes: 32 << 20, snapshot_bytes_per_s: 32 << 20 }
    }
}

/// Opens (or creates) the node's db under `dir` and returns its two Raft halves. Every
/// record is read and checked first, the current snapshot file too: damaged files are
/// `StorageError::Damaged`, naming the file; sled panics on them are caught.
pub async fn open<C>(
    dir: &Path,
    config: StorageConfig,
) -> Result<(LogStore<C>, StateMachine<C>), StorageError>
where
    C: GoimTypes,
    C::D: Command<Reply = C::R>,
{
    let data_dir = dir.to_path_buf();
    let (db, durability, snapshots) =
        tokio::task::spawn_blocking(move || recovery::open_checked::<C>(&data_dir, config))
            .await
            .map_err(|e| StorageError::Corrupt(format!("opening storage: {e}")))??;
    let log = LogStore::open(&db, durability)?;
    let sm = StateMachine::open(&db, snapshots)?;
    Ok((log, sm))
}
