//! An instant several tasks read and one writes without a lock: when a leader was last
//! heard from (`liveness`), until when a stranded leader keeps quiet (`check_quorum`).
//! Stored as milliseconds since the value was made.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct AtomicInstant {
    base: Instant,
    ms: AtomicU64,
}

impl AtomicInstant {
    /// Holding the present instant.
    pub(crate) fn new() -> AtomicInstant {
        AtomicInstant { base: Instant::now(), ms: AtomicU64::new(0) }
    }

    /// Holds `at` (to the millisecond; an instant before the value was made holds as that).
    pub(crate) fn store(&self, at: Instant) {
        let ms = u64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX);
        self.ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn load(&self) -> Instant {
        self.base + Duration::from_millis(self.ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_what_was_stored_to_the_millisecond() {
        let a = AtomicInstant::new();
        let made = a.load();
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(a.load(), made, "holds its first instant until told otherwise");
        a.store(Instant::now() + Duration::from_millis(1_200));
        assert_eq!(a.load(), made + Duration::from_millis(1_450));
    }
}
