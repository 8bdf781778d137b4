//! Small rate tools every bound in the node shares: a token bucket (connection and auth
//! rate per address, WebSocket control frames and op-4 messages per connection) and a log
//! throttle, so that a flood of refusals or accept errors costs one log line per interval
//! instead of one per event.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Events per second with a burst; a zero rate means no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: f64,
}

impl Rate {
    /// `per_sec` events a second, bursts of `burst` (at least 1); `per_sec == 0`: unlimited.
    pub fn new(per_sec: u32, burst: u32) -> Rate {
        Rate { per_sec: f64::from(per_sec), burst: f64::from(burst.max(1)) }
    }

    /// The burst defaults to twice the rate.
    pub fn per_sec(per_sec: u32) -> Rate {
        Rate::new(per_sec, per_sec.saturating_mul(2))
    }

    pub const UNLIMITED: Rate = Rate { per_sec: 0.0, burst: 1.0 };

    pub fn is_limited(&self) -> bool {
        self.per_sec > 0.0
    }
}

/// A token bucket; it starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate: Rate, now: Instant) -> TokenBucket {
        TokenBucket { tokens: rate.burst, at: now }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_sec).min(rate.burst);
        self.at = now;
    }

    /// Takes one token if there is one; always true for an unlimited rate.
    pub fn take(&mut self, rate: Rate, now: Instant) -> bool {
        if !rate.is_limited() {
            return true;
        }
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Back to full: nothing is lost by forgetting this bucket.
    pub fn is_full(&mut self, rate: Rate, now: Instant) -> bool {
        if !rate.is_limited() {
            return true;
        }
        self.refill(rate, now);
        self.tokens >= rate.burst
    }
}

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
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
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
    fn bucket_allows_the_burst_then_the_rate() {
        let rate = Rate::new(10, 3);
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate, t0);
        assert!((0..3).all(|_| b.take(rate, t0)));
        assert!(!b.take(rate, t0));
        assert!(b.take(rate, t0 + Duration::from_millis(100)));
        assert!(!b.take(rate, t0 + Duration::from_millis(150)));
        assert!(!b.is_full(rate, t0 + Duration::from_millis(200)));
        assert!(b.is_full(rate, t0 + Duration::from_secs(1)));
        let mut free = TokenBucket::new(Rate::UNLIMITED, t0);
        assert!((0..1000).all(|_| free.take(Rate::UNLIMITED, t0)));
    }

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
}
