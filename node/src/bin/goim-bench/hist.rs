//! Push → receive latencies: one HdrHistogram per worker process (constant-time record,
//! fixed memory whatever the message count), shipped to the parent as its non-empty
//! buckets and merged there, so percentiles cover every delivery of the run.
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies in microseconds, 1 µs to 1 hour, 3 significant digits.
pub struct Latencies(Histogram<u64>);

/// The percentiles the bench reports, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// A histogram as its non-empty buckets: (highest value of the bucket in µs, count).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Buckets(pub Vec<(u64, u64)>);

const MAX_US: u64 = 3_600_000_000;

impl Latencies {
    pub fn new() -> Self {
        // The bounds are constants that new_with_bounds accepts (1 ≤ low, high ≥ 2·low, 3 digits).
        Latencies(Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds"))
    }

    /// Records one delivery `us` microseconds after its push (clamped to the range).
    pub fn record(&mut self, us: u64) {
        self.0.saturating_record(us.clamp(1, MAX_US));
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    pub fn to_buckets(&self) -> Buckets {
        Buckets(self.0.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect())
    }

    pub fn add(&mut self, buckets: &Buckets) {
        for &(us, n) in &buckets.0 {
            // Values come from a histogram of the same bounds; clamping keeps record_n total.
            let _ = self.0.record_n(us.clamp(1, MAX_US), n);
        }
    }

    pub fn percentiles(&self) -> Percentiles {
        if self.0.is_empty() {
            return Percentiles::default();
        }
        let ms = |q: f64| self.0.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: self.0.max() as f64 / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_buckets_keep_counts_and_percentiles() {
        let (mut a, mut b) = (Latencies::new(), Latencies::new());
        (1..=900).for_each(|_| a.record(1_000));
        (1..=100).for_each(|_| b.record(50_000));
        let mut all = Latencies::new();
        all.add(&a.to_buckets());
        all.add(&b.to_buckets());
        assert_eq!(all.count(), 1000);
        let p = all.percentiles();
        assert!((p.p50_ms - 1.0).abs() < 0.01, "{p:?}");
        assert!((p.p99_ms - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.max_ms - 50.0).abs() < 0.1, "{p:?}");
    }
}
