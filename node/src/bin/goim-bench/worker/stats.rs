//! The worker process's account of its sockets: plain cells, since every socket task runs
//! on the process's one thread, and one latency histogram fed by every delivery.
use std::cell::{Cell, RefCell};

use super::report::{Counts, Final};
use crate::hist::Latencies;
use crate::stamp;

/// Distinct failure reasons kept for the report.
const MAX_ERRORS: usize = 5;

pub struct Stats {
    counts: Cell<Counts>,
    first_ns: Cell<u64>,
    last_ns: Cell<u64>,
    latencies: RefCell<Latencies>,
    errors: RefCell<Vec<String>>,
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            counts: Cell::default(),
            first_ns: Cell::new(0),
            last_ns: Cell::new(0),
            latencies: RefCell::new(Latencies::new()),
            errors: RefCell::default(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Counts)) {
        let mut c = self.counts.get();
        f(&mut c);
        self.counts.set(c);
    }

    pub fn subscribed(&self) {
        self.update(|c| c.subscribed += 1);
    }

    pub fn heartbeat(&self) {
        self.update(|c| c.heartbeats += 1);
    }

    /// A socket ended: `was_subscribed` tells a loss from a failure to subscribe.
    pub fn ended(&self, was_subscribed: bool, reason: String) {
        self.update(|c| if was_subscribed { c.closed += 1 } else { c.failed += 1 });
        let mut errors = self.errors.borrow_mut();
        if errors.len() < MAX_ERRORS && !errors.contains(&reason) {
            errors.push(reason);
        }
    }

    /// One bench message, by the first bytes of its body, read at `now_ns`.
    pub fn deliver(&self, body_prefix: &[u8], now_ns: u64) {
        self.update(|c| c.received += 1);
        if self.first_ns.get() == 0 {
            self.first_ns.set(now_ns);
        }
        self.last_ns.set(now_ns);
        if let Some(sent) = stamp::read_stamp(body_prefix) {
            self.latencies.borrow_mut().record(now_ns.saturating_sub(sent) / 1000);
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts.get()
    }

    pub fn final_report(&self) -> Final {
        Final {
            counts: self.counts.get(),
            first_ns: self.first_ns.get(),
            last_ns: self.last_ns.get(),
            latencies: self.latencies.borrow().to_buckets(),
            errors: self.errors.borrow().clone(),
        }
    }
}
