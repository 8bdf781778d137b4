//! What a run found, per system, and how it is shown: a side-by-side table (with a
//! goim / nats ratio column when both ran) for people, one JSON object per run for
//! scripts (`--json`).
use serde::Serialize;

use crate::hist::Percentiles;

/// One system's figures from `fanout` or `latency`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadResult {
    pub system: String,
    pub server: String,
    pub subscribers: u64,
    pub pushes_sent: u64,
    pub pushes_acked: u64,
    /// Acknowledged pushes per second of the push phase.
    pub pushes_per_s: f64,
    /// acked pushes × subscribers.
    pub expected: u64,
    /// Deliveries by the deadline (end of pushing + the drain time).
    pub delivered: u64,
    pub delivered_fraction: f64,
    /// delivered / (last delivery − first push).
    pub delivered_per_s: f64,
    pub first_push_to_last_delivery_s: f64,
    pub latency: Percentiles,
    /// Subscribers the server dropped during the run.
    pub subscribers_lost: u64,
    /// Server CPU (user + system) from the first push to the end of the drain.
    pub server_cpu_s: f64,
    pub server_cpu_s_per_million: f64,
    pub server_rss_before_mb: f64,
    pub server_rss_after_mb: f64,
    /// Resident memory the subscribers' connections added, per connection.
    pub server_rss_per_conn_kb: f64,
    /// This bench's CPU (parent and workers) over the same window.
    pub loadgen_cpu_s: f64,
    /// The window: first push to the end of the drain (wall seconds).
    pub cpu_window_s: f64,
    /// CPU the rest of the machine used meanwhile at normal priority (other work on the
    /// shared cores), and niced (it mostly fills what would be idle).
    pub other_cpu_s: f64,
    pub niced_cpu_s: f64,
    pub errors: Vec<String>,
}

/// One system's figures from `conns`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnsResult {
    pub system: String,
    pub server: String,
    pub connections: u64,
    pub subscribed: u64,
    pub connect_s: f64,
    /// Authenticated connections per second of the connect storm.
    pub auths_per_s: f64,
    /// Growth of the servers' data directories over the run, per connection (goim: the
    /// replicated session table, the Raft log, sled's files).
    pub disk_per_conn_kb: f64,
    pub held_s: f64,
    pub server_rss_before_mb: f64,
    /// (seconds into the hold, server RSS in MB), every sample.
    pub server_rss_samples_mb: Vec<(f64, f64)>,
    pub server_rss_per_conn_kb: f64,
    /// Last sample minus first: flat memory is near 0.
    pub server_rss_growth_mb: f64,
    pub server_cpu_s_during_hold: f64,
    pub lost: u64,
    pub heartbeat_replies: u64,
    pub all_stayed_connected: bool,
    pub loadgen_cpu_s: f64,
    pub loadgen_rss_mb: f64,
    pub errors: Vec<String>,
}

/// A table row: label, one cell per system, and the goim / nats ratio when it means something.
pub struct Row {
    pub label: &'static str,
    pub cells: Vec<String>,
    pub ratio: Option<f64>,
}

pub fn row<T>(label: &'static str, systems: &[T], cell: impl Fn(&T) -> String) -> Row {
    Row { label, cells: systems.iter().map(cell).collect(), ratio: None }
}

impl Row {
    /// Adds the ratio of the first system's value to the second's.
    pub fn ratio<T>(mut self, systems: &[T], value: impl Fn(&T) -> f64) -> Row {
        if let [a, b] = systems {
            let (a, b) = (value(a), value(b));
            self.ratio = (b != 0.0 && a.is_finite() && b.is_finite()).then(|| a / b);
        }
        self
    }
}

/// Prints rows under a header of system names; a ratio column when two systems ran.
pub fn print_table(
    out: &mut impl std::io::Write,
    title: &str,
    names: &[String],
    rows: &[Row],
) -> std::io::Result<()> {
    let label_w = rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(0).max(6);
    let cell_w: Vec<usize> = (0..names.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.cells.get(i))
                .map(|c| c.chars().count())
                .chain([names[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let two = names.len() == 2;
    writeln!(out, "{title}")?;
    let mut line = format!("{:label_w$}", "");
    for (n, w) in names.iter().zip(&cell_w) {
        line += &format!("  {n:>w$}");
    }
    if two {
        line += "  goim/nats";
    }
    writeln!(out, "{line}")?;
    for r in rows {
        let mut line = format!("{:label_w$}", r.label);
        for (c, w) in r.cells.iter().zip(&cell_w) {
            line += &format!("  {c:>w$}");
        }
        if two {
            if let Some(x) = r.ratio {
                line += &format!("  {x:>9.2}");
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Shows a run: the table on stdout; with `json`, the table on stderr and `object` (one
/// line) on stdout.
pub fn emit(
    json: bool,
    title: &str,
    names: &[String],
    rows: &[Row],
    object: serde_json::Value,
) -> std::io::Result<()> {
    if json {
        print_table(&mut std::io::stderr(), title, names, rows)?;
        println!("{object}");
        Ok(())
    } else {
        print_table(&mut std::io::stdout(), title, names, rows)
    }
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up_and_ratios_need_two_systems() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
        let systems = [2.0f64, 4.0];
        let rows = [row("value", &systems, |v| format!("{v}")).ratio(&systems, |v| *v)];
        let mut out = Vec::new();
        print_table(&mut out, "t", &["goim".into(), "nats".into()], &rows).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("value      2     4       0.50"), "{text}");
    }
}
