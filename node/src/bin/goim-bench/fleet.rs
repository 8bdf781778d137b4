//! The parent's handle on its worker processes: it starts them (this binary, hidden
//! `worker` subcommand) with their share of the sockets, follows their progress lines,
//! asks for their final reports, and knows their PIDs so the load generator's own CPU
//! can be read from /proc beside the servers'.
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::progress;
use crate::report::thousands;
use crate::servers::{System, Transport};
use crate::worker::report::{Counts, Final, Report, STOP};

/// How the subscribers of a run are laid out.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub clients: u64,
    pub workers: u64,
    pub sources: u32,
}

/// Longest wait for every subscriber to be connected and subscribed.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(300);
/// Sockets one source address carries at most (the ephemeral range here has ~28,000 ports).
const PER_SOURCE: u64 = 20_000;

impl Layout {
    /// `per_worker` sockets a process at most (at least 2 processes, one per core), at
    /// least `sources` source addresses and enough that none carries more than 20,000.
    pub fn new(clients: u64, per_worker: u64, workers: Option<u64>, sources: u32) -> Layout {
        let workers =
            workers.unwrap_or_else(|| clients.div_ceil(per_worker.max(1)).max(2)).clamp(1, clients.max(1));
        let sources = sources.max(clients.div_ceil(PER_SOURCE) as u32).max(1);
        Layout { clients, workers, sources }
    }
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    final_report: oneshot::Receiver<Final>,
}

pub struct Fleet {
    workers: Vec<Worker>,
    progress: Arc<Mutex<Vec<Counts>>>,
    pids: Vec<u32>,
}

impl Fleet {
    pub fn spawn(
        system: System,
        transport: Transport,
        targets: &[SocketAddr],
        layout: Layout,
    ) -> anyhow::Result<Fleet> {
        let exe = std::env::current_exe()?;
        let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
        let progress = Arc::new(Mutex::new(vec![Counts::default(); layout.workers as usize]));
        let (mut workers, mut pids) = (Vec::new(), Vec::new());
        for w in 0..layout.workers {
            let first = layout.clients * w / layout.workers;
            let count = layout.clients * (w + 1) / layout.workers - first;
            let mut child = Command::new(&exe)
                .arg("worker")
                .args(["--system".to_string(), cli_name(&system), "--transport".into(), cli_name(&transport)])
                .args(["--targets", &targets.join(",")])
                .args(["--first", &first.to_string(), "--count", &count.to_string()])
                .args(["--sources", &layout.sources.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("starting a worker process")?;
            let (Some(stdin), Some(stdout), Some(pid)) =
                (child.stdin.take(), child.stdout.take(), child.id())
            else {
                anyhow::bail!("worker process without pipes");
            };
            let (tx, final_report) = oneshot::channel();
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                let mut tx = Some(tx);
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<Report>(&line) {
                        Ok(Report::Progress { counts }) => {
                            if let Ok(mut p) = progress.lock() {
                                p[w as usize] = counts;
                            }
                        }
                        Ok(Report::Final(report)) => {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(report);
                            }
                        }
                        Err(e) => eprintln!("worker {w}: unreadable report ({e}): {line:.200}"),
                    }
                }
            });
            pids.push(pid);
            workers.push(Worker { child, stdin, final_report });
        }
        Ok(Fleet { workers, progress, pids })
    }

    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// The load generator's processes: this one and its workers.
    pub fn loadgen_pids(&self) -> Vec<u32> {
        std::iter::once(std::process::id()).chain(self.pids.iter().copied()).collect()
    }

    /// Waits until every one of `clients` sockets is subscribed (the bar shows it) and
    /// says how long that took; otherwise stops the workers and fails with their reasons.
    pub async fn wait_subscribed(self, system: System, clients: u64) -> anyhow::Result<(Fleet, f64)> {
        let started = Instant::now();
        let bar = progress::bar(format!("{system} subscribe"), clients);
        loop {
            let c = self.counts();
            bar.set_position(c.subscribed);
            if c.subscribed >= clients {
                let secs = started.elapsed().as_secs_f64();
                progress::done(bar, format!("{system}: {} subscribers in {secs:.1} s", thousands(clients)));
                return Ok((self, secs));
            }
            if c.subscribed + c.failed + c.closed >= clients || started.elapsed() > SUBSCRIBE_TIMEOUT {
                bar.finish_and_clear();
                let reasons: Vec<String> =
                    self.stop().await.unwrap_or_default().into_iter().flat_map(|f| f.errors).collect();
                anyhow::bail!(
                    "{system}: only {} of {clients} subscribed ({} failed, {} closed); reasons:\n  {}",
                    c.subscribed,
                    c.failed,
                    c.closed,
                    reasons.join("\n  ")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The workers' counts as last reported (at most 200 ms old).
    pub fn counts(&self) -> Counts {
        let mut all = Counts::default();
        if let Ok(p) = self.progress.lock() {
            p.iter().for_each(|c| all.add(c));
        }
        all
    }

    /// Asks every worker for its final report and waits for them to exit.
    pub async fn stop(mut self) -> anyhow::Result<Vec<Final>> {
        for w in &mut self.workers {
            let _ = w.stdin.write_all(format!("{STOP}\n").as_bytes()).await;
            let _ = w.stdin.flush().await;
        }
        let mut finals = Vec::new();
        for (i, w) in self.workers.into_iter().enumerate() {
            let report = tokio::time::timeout(Duration::from_secs(30), w.final_report).await;
            let mut child = w.child;
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            finals.push(
                report
                    .ok()
                    .and_then(Result::ok)
                    .with_context(|| format!("worker {i} gave no final report"))?,
            );
        }
        Ok(finals)
    }
}

/// A clap value's command-line name.
fn cli_name<T: clap::ValueEnum>(value: &T) -> String {
    value.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_respect_the_per_process_and_per_address_limits() {
        let l = Layout::new(10_000, 15_000, None, 8);
        assert_eq!((l.workers, l.sources), (2, 8));
        let l = Layout::new(100_000, 15_000, None, 8);
        assert_eq!((l.workers, l.sources), (7, 8));
        let l = Layout::new(300_000, 15_000, None, 8);
        assert_eq!(l.sources, 15);
        assert_eq!(Layout::new(1, 15_000, None, 8).workers, 1);
        assert_eq!(Layout::new(1000, 15_000, Some(3), 8).workers, 3);
    }
}
