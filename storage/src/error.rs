//! The storage crate's one error type, and its mapping onto openraft's `StorageError`.
use openraft::{AnyError, ErrorSubject, ErrorVerb};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("codec: {0}")]
    Serial(#[from] goim_net::serial::SerialError),
    #[error("corrupt: {0}")]
    Corrupt(String),
}

impl StorageError {
    pub(crate) fn raft(self, subject: ErrorSubject<u64>, verb: ErrorVerb) -> openraft::StorageError<u64> {
        openraft::StorageIOError::new(subject, verb, AnyError::new(&self)).into()
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
