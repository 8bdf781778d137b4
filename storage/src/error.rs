//! The storage crate's one error type, and its mapping onto openraft's `StorageError`.
use std::path::{Path, PathBuf};

use openraft::{AnyError, ErrorSubject, ErrorVerb};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("codec: {0}")]
    Serial(#[from] goim_types::serial::SerialError),
    #[error("corrupt: {0}")]
    Corrupt(String),
    /// A write of the Raft log failed, or its writer thread stopped.
    #[error("log write: {0}")]
    LogWrite(String),
    /// The files on disk are damaged (checksum mismatch, torn or truncated file, a sled
    /// panic while recovering, a rollback behind the durability witness): the node must
    /// not start on them. `path` names the damaged file.
    #[error("data damaged: {}: {what}", path.display())]
    Damaged { path: PathBuf, what: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl StorageError {
    pub(crate) fn raft(self, subject: ErrorSubject<u64>, verb: ErrorVerb) -> openraft::StorageError<u64> {
        openraft::StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }

    pub(crate) fn damaged(path: &Path, what: impl Into<String>) -> StorageError {
        StorageError::Damaged { path: path.to_path_buf(), what: what.into() }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> StorageError {
        StorageError::Io { path: path.to_path_buf(), source }
    }

    /// The damaged file and what is wrong with it, if this error is about damaged data.
    pub fn damage(&self) -> Option<(&Path, &str)> {
        match self {
            StorageError::Damaged { path, what } => Some((path, what)),
            _ => None,
        }
    }
}

pub(crate) fn read_logs(e: impl Into<StorageError>) -> openraft::StorageError<u64> {
    e.into().raft(ErrorSubject::Logs, ErrorVerb::Read)
}

pub(crate) fn write_logs(e: impl Into<StorageError>) -> openraft::StorageError<u64> {
    e.into().raft(ErrorSubject::Logs, ErrorVerb::Write)
}

pub(crate) fn read_sm(e: impl Into<StorageError>) -> openraft::StorageError<u64> {
    e.into().raft(ErrorSubject::StateMachine, ErrorVerb::Read)
}

pub(crate) fn write_sm(e: impl Into<StorageError>) -> openraft::StorageError<u64> {
    e.into().raft(ErrorSubject::StateMachine, ErrorVerb::Write)
}

pub(crate) fn snapshot_io(e: impl Into<StorageError>) -> openraft::StorageError<u64> {
    e.into().raft(ErrorSubject::Snapshot(None), ErrorVerb::Write)
}
