//! Where a snapshot build runs: a thread of its own at the lowest CPU priority (nice 19).
//! A build reads the whole state tree and writes it out, seconds of CPU on a box whose
//! cores the push path needs; at nice 19 it takes what they leave, so pushes keep their
//! latency while one is built. The thread is its own (not tokio's blocking pool) because
//! an unprivileged process may lower a thread's priority but not raise it back.
use tokio::sync::oneshot;

use crate::StorageError;

/// The nice value of the build thread.
const NICE: libc::c_int = 19;

/// Runs `work` on a new low-priority thread and waits for its result.
pub(crate) async fn run<T, F>(work: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("snapshot build".into())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(work());
        })
        .map_err(|e| StorageError::Corrupt(format!("snapshot build thread: {e}")))?;
    rx.await.map_err(|_| StorageError::Corrupt("snapshot build thread ended without a result".into()))?
}

/// Lowers the calling thread's priority; a failure only costs latency, so it is logged.
fn lower_priority() {
    // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
    let done = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE)
    };
    if done != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "snapshot build runs at normal priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_at_nice_19_on_a_thread_of_its_own() {
        let caller = std::thread::current().id();
        let (nice, thread) = run(|| {
            // SAFETY: as above.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
            Ok((nice, std::thread::current().id()))
        })
        .await
        .unwrap();
        assert_eq!(nice, NICE);
        assert_ne!(thread, caller);
        let failed: Result<(), _> = run(|| Err(StorageError::Corrupt("no".into()))).await;
        assert!(matches!(failed, Err(StorageError::Corrupt(m)) if m == "no"));
    }
}
