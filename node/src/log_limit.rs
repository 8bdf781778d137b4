//! openraft logs each failed replication or heartbeat to an unreachable voter, at WARN and
//! again at ERROR, every time it retries: while one peer is down or cut off that is several
//! lines a second on every node that talks to it, burying everything else. This layer lets a
//! WARN or ERROR event of a limited target through at most once per interval per place in
//! the source (its callsite), and counts the rest in `goim_log_suppressed_total{target}`.
//! Our own code limits its repeated lines where it logs them, with the same `goim_net::LogEvery`.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use goim_net::LogEvery;
use tokio::time::Instant;
use tracing::callsite::Identifier;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Targets (module paths) whose WARN and ERROR events are limited.
const LIMITED: &[&str] = &["openraft"];

pub struct RepeatLimit {
    every: Duration,
    callsites: Mutex<HashMap<Identifier, LogEvery>>,
}

impl RepeatLimit {
    pub fn new(every: Duration) -> RepeatLimit {
        RepeatLimit { every, callsites: Mutex::new(HashMap::new()) }
    }

    /// Whether an event with `meta` at `now` is shown: any that is not a limited WARN or
    /// ERROR; of those, the first from its callsite, and then the first after each `every`.
    fn allow(&self, meta: &'static Metadata<'static>, now: Instant) -> bool {
        // Levels order by verbosity: ERROR < WARN < INFO.
        if *meta.level() > Level::WARN || !LIMITED.iter().any(|t| meta.target().starts_with(t)) {
            return true;
        }
        let mut callsites = self.callsites.lock().unwrap_or_else(|e| e.into_inner());
        let log = callsites.entry(meta.callsite()).or_insert_with(|| LogEvery::new(self.every));
        log.allow_at(now).is_some()
    }
}

impl<S: Subscriber> Layer<S> for RepeatLimit {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if self.allow(meta, Instant::now()) {
            return true;
        }
        metrics::counter!("goim_log_suppressed_total", "target" => meta.target()).increment(1);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metadata of a callsite, from a span (disabled spans keep theirs: no subscriber
    /// is needed, so no global state of `tracing` is involved).
    macro_rules! callsite {
        ($level:expr, $target:expr) => {
            tracing::span!(target: $target, $level, "callsite").metadata().expect("a span's metadata")
        };
    }

    #[test]
    fn limited_warnings_show_once_per_interval_per_callsite() {
        let limit = RepeatLimit::new(Duration::from_secs(5));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let replication = callsite!(Level::WARN, "openraft::replication");
        let rpc_error = callsite!(Level::ERROR, "openraft::replication");
        let info = callsite!(Level::INFO, "openraft::core");
        let ours = callsite!(Level::WARN, "goim::comet");

        assert!(limit.allow(replication, at(0)));
        assert!(limit.allow(rpc_error, at(1)), "another callsite has its own interval");
        for ms in [2, 100, 4_999] {
            assert!(!limit.allow(replication, at(ms)), "a repeat within the interval, {ms} ms");
            assert!(!limit.allow(rpc_error, at(ms + 1)));
        }
        assert!(limit.allow(replication, at(5_000)), "the first after the interval");
        assert!(!limit.allow(replication, at(5_001)));
        assert!(limit.allow(rpc_error, at(5_001)));
        for ms in 0..100 {
            assert!(limit.allow(info, at(ms)), "below WARN: not limited");
            assert!(limit.allow(ours, at(ms)), "other targets: not limited");
        }
    }
}
