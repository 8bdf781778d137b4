//! One log line per interval for events that can come in floods (refused connections,
//! accept errors, misaddressed Raft messages, a library's retries): the rest are counted and
//! the count goes with the next line let through. Shared by every crate that logs such events.
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Lets one log line through per interval and counts the ones it held back.
pub struct LogEvery {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogEvery {
    pub const fn new(interval: Duration) -> LogEvery {
        LogEvery { interval, state: Mutex::new((None, 0)) }
    }

    /// `Some(suppressed)` when a line may be logged now (with how many were held back since
    /// the last one), `None` when this one is to be held back.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    /// As `allow`, at `now`.
    pub fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.0 {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                state.1 += 1;
                None
            }
            _ => {
                let suppressed = std::mem::take(&mut state.1);
                state.0 = Some(now);
                Some(suppressed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_every_counts_what_it_holds_back() {
        let log = LogEvery::new(Duration::from_secs(60));
        assert_eq!(log.allow(), Some(0));
        assert_eq!(log.allow(), None);
        assert_eq!(log.allow(), None);
        let log = LogEvery::new(Duration::ZERO);
        assert_eq!(log.allow(), Some(0));
        assert_eq!(log.allow(), Some(0));
    }

    #[test]
    fn a_line_is_let_through_again_once_the_interval_is_over() {
        let log = LogEvery::new(Duration::from_secs(5));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(log.allow_at(at(0)), Some(0));
        assert_eq!(log.allow_at(at(4_999)), None);
        assert_eq!(log.allow_at(at(5_000)), Some(1));
        assert_eq!(log.allow_at(at(5_001)), None);
    }
}
