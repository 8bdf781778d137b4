//! Heartbeat deadlines and closing every connection at shutdown. An idle connection should
//! cost as little as possible, so it holds no timer and no cancellation token of its own:
//! each channel keeps the time its next heartbeat is due by (a number), and one sweeper
//! per comet closes the channels past it, and all of them when the comet shuts down.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Comet;

/// The comet's clock for heartbeat deadlines: ms since it started.
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { epoch: Instant::now() }
    }

    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// How often the sweeper looks: a quarter of the heartbeat interval, between 10 ms and 1 s,
/// so a connection is closed at most that late (the idle timeout is twice the interval).
pub fn sweep_period(heartbeat: Duration) -> Duration {
    (heartbeat / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Closes the channels whose heartbeat is overdue, every `sweep_period`, until the comet
/// shuts down; then closes every channel.
pub async fn sweep_loop(comet: Arc<Comet>) {
    let mut tick = tokio::time::interval(sweep_period(comet.config().heartbeat));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = comet.shutdown_token().cancelled() => break,
            _ = tick.tick() => close_overdue(&comet),
        }
    }
    for bucket in comet.buckets() {
        bucket.for_each(|ch| ch.close());
    }
}

fn close_overdue(comet: &Comet) {
    let now = comet.clock().now_ms();
    let mut overdue = 0u64;
    for bucket in comet.buckets() {
        bucket.for_each(|ch| {
            if ch.heartbeat_overdue(now) && !ch.is_closed() {
                tracing::debug!(key = %ch.key, conn = ch.conn, "heartbeat timeout");
                ch.close();
                overdue += 1;
            }
        });
    }
    if overdue > 0 {
        metrics::counter!("goim_comet_heartbeat_timeouts_total").increment(overdue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_period_follows_the_heartbeat_within_bounds() {
        assert_eq!(sweep_period(Duration::from_secs(30)), Duration::from_secs(1));
        assert_eq!(sweep_period(Duration::from_millis(400)), Duration::from_millis(100));
        assert_eq!(sweep_period(Duration::from_millis(8)), Duration::from_millis(10));
    }
}
