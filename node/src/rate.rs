//! The token bucket every bound in the node shares: connection and auth rate per address,
//! WebSocket control frames and op-4 messages per connection. (Log lines are held to one per
//! interval by `goim_net::LogEvery`.)

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
}
