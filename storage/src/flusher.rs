//! Group commit for the Raft log: appends are written to sled at once and their callbacks
//! queued here; one task flushes sled once for everything queued so far, raises the
//! durability witness to what that flush made durable, and only then tells openraft the
//! entries are durable. Under load, many appends share one fsync (and one witness sync).
use openraft::storage::LogFlushed;
use tokio::sync::mpsc;

use crate::durable::Durability;
use crate::{GoimTypes, StorageError};

pub(crate) struct Flusher<C: GoimTypes> {
    tx: mpsc::UnboundedSender<LogFlushed<C>>,
}

impl<C: GoimTypes> Clone for Flusher<C> {
    fn clone(&self) -> Self {
        Flusher { tx: self.tx.clone() }
    }
}

impl<C: GoimTypes> Flusher<C> {
    pub(crate) fn start(db: sled::Db, durability: Durability) -> Flusher<C> {
        let (tx, mut rx) = mpsc::unbounded_channel::<LogFlushed<C>>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, 4096).await > 0 {
                let started = std::time::Instant::now();
                let result = flush(&db, &durability).await;
                metrics::histogram!("goim_storage_log_flush_seconds").record(started.elapsed().as_secs_f64());
                metrics::histogram!("goim_storage_log_flush_appends").record(batch.len() as f64);
                for callback in batch.drain(..) {
                    let r = match &result {
                        Ok(()) => Ok(()),
                        Err(e) => Err(std::io::Error::other(e.to_string())),
                    };
                    callback.log_io_completed(r);
                }
            }
        });
        Flusher { tx }
    }

    /// Queues `callback` to be completed after the next flush.
    pub(crate) fn after_flush(&self, callback: LogFlushed<C>) {
        if let Err(mpsc::error::SendError(callback)) = self.tx.send(callback) {
            callback.log_io_completed(Err(std::io::Error::other("log flusher stopped")));
        }
    }
}

/// Flushes sled, then raises the witness to what was written before the flush began.
pub(crate) async fn flush(db: &sled::Db, durability: &Durability) -> Result<(), StorageError> {
    let mark = durability.mark();
    db.flush_async().await?;
    durability.raise(mark).await
}
