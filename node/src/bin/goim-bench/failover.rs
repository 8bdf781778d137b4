//! `goim-bench failover`: how long pushes stop when the leader dies. Starts logic voters
//! (release build: the `goim` next to this binary), keeps HTTP pushers busy on every node
//! (a failed or slow attempt moves to the next node), then `--kills` times: finds the
//! leader, `kill -9`s it, and measures kill → the first acknowledged push that was sent
//! after the kill; restarts the killed node and lets it catch up before the next kill.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::time::Instant;

use crate::http1::{self, Http1};
use crate::servers::{ServerArgs, System};

#[derive(clap::Args, Debug)]
pub struct FailoverArgs {
    /// Leader kills.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Logic voters.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=7))]
    voters: u64,
    /// Concurrent pushers (spread over the nodes).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// A push attempt not answered within this many ms moves to the next node.
    #[arg(long, default_value_t = 1000)]
    attempt_ms: u64,
    /// Seconds of steady pushing before each kill (the restarted node catches up meanwhile).
    #[arg(long, default_value_t = 3)]
    settle: u64,
    /// The goim binary to start (default: `goim` next to this executable).
    #[arg(long)]
    goim_bin: Option<PathBuf>,
    /// One more flag for every goim process started (repeat for more).
    #[arg(long = "goim-arg", allow_hyphen_values = true)]
    goim_args: Vec<String>,
    /// One JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
}

/// The kill being measured: when it happened, and the first ack of a push sent after it.
#[derive(Default)]
struct Watch {
    killed_at: Option<Instant>,
    first_ack: Option<Instant>,
}

pub async fn run(args: FailoverArgs) -> anyhow::Result<i32> {
    let servers = ServerArgs {
        goim_bin: args.goim_bin.clone(),
        comets: 0,
        voters: args.voters,
        goim_args: args.goim_args.clone(),
        goim_http: None,
        goim_sub: Vec::new(),
        server_pid: Vec::new(),
        nats_bin: String::new(),
    };
    let mut running = servers.start_for_pushes(System::Goim).await?;
    let nodes = running.http.clone();
    let watch = Arc::new(Mutex::new(Watch::default()));
    let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let mut pushers = tokio::task::JoinSet::new();
    for p in 0..args.concurrency {
        let pusher = Pusher {
            nodes: nodes.clone(),
            at: p % nodes.len(),
            room: p % 100,
            attempt: Duration::from_millis(args.attempt_ms.max(1)),
            watch: watch.clone(),
            stop: stop.clone(),
            acked: acked.clone(),
        };
        pushers.spawn(pusher.run());
    }
    let mut gaps_ms = Vec::new();
    for k in 0..args.kills {
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
        let leader = leader_of(&nodes).await.context("no leader before the kill")?;
        let before = acked.load(Ordering::Relaxed);
        *lock(&watch) = Watch { killed_at: Some(Instant::now()), first_ack: None };
        running.kill(leader)?;
        let killed_at = Instant::now();
        let deadline = killed_at + Duration::from_secs(60);
        let gap = loop {
            let seen = {
                let w = lock(&watch);
                w.killed_at.zip(w.first_ack)
            };
            if let Some((at, first)) = seen {
                break first.duration_since(at);
            }
            anyhow::ensure!(Instant::now() < deadline, "no push acknowledged within 60 s of kill {}", k + 1);
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        gaps_ms.push(gap.as_secs_f64() * 1000.0);
        eprintln!(
            "kill {:>2}: node {} → first ack after {:.0} ms ({} pushes acked meanwhile)",
            k + 1,
            leader + 1,
            gap.as_secs_f64() * 1000.0,
            acked.load(Ordering::Relaxed) - before
        );
        running.restart(leader)?;
        wait_health(nodes[leader]).await?;
    }
    stop.store(true, Ordering::Relaxed);
    while pushers.join_next().await.is_some() {}
    let mut sorted = gaps_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| sorted.get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)));
    let (median, max) = (pct(0.5).copied().unwrap_or(0.0), sorted.last().copied().unwrap_or(0.0));
    let table = format!(
        "failover: {} leader kills, {} voters, {} pushers, attempt timeout {} ms\n\
         kill → first ack ms: median {median:.0}  p90 {:.0}  max {max:.0}  min {:.0}\n\
         pushes acked: {}",
        gaps_ms.len(),
        args.voters,
        args.concurrency,
        args.attempt_ms,
        pct(0.9).copied().unwrap_or(0.0),
        sorted.first().copied().unwrap_or(0.0),
        acked.load(Ordering::Relaxed)
    );
    let object = json!({
        "bench": "failover",
        "kills": gaps_ms.len(),
        "voters": args.voters,
        "concurrency": args.concurrency,
        "attempt_ms": args.attempt_ms,
        "gaps_ms": gaps_ms,
        "median_ms": median,
        "max_ms": max,
    });
    if args.json {
        eprintln!("{table}");
        println!("{object}");
    } else {
        println!("{table}");
    }
    Ok(0)
}

fn lock(watch: &Mutex<Watch>) -> std::sync::MutexGuard<'_, Watch> {
    watch.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The index (start order) of the node some live node names as leader.
async fn leader_of(nodes: &[SocketAddr]) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for http in nodes {
            if let Ok((200, body)) = http1::get(*http, "/cluster/status").await {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let leader = v["data"]["leader"].as_u64().and_then(|id| usize::try_from(id).ok());
                if let Some(i) = leader.and_then(|id| id.checked_sub(1)).filter(|i| *i < nodes.len()) {
                    return Some(i);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn wait_health(http: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http1::get(http, "/health").await, Ok((200, _))) {
        anyhow::ensure!(Instant::now() < deadline, "restarted node {http} not healthy within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// One pusher: one request in flight, to its current node; an error or an attempt past
/// its timeout moves it to the next node.
struct Pusher {
    nodes: Vec<SocketAddr>,
    at: usize,
    room: usize,
    attempt: Duration,
    watch: Arc<Mutex<Watch>>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
}

impl Pusher {
    async fn run(mut self) {
        let mut conn: Option<Http1> = None;
        let path = format!("/goim/push/room?operation=1000&type=live&room={}", self.room);
        while !self.stop.load(Ordering::Relaxed) {
            let node = self.nodes[self.at];
            let sent = Instant::now();
            let attempt = async {
                let mut c = match conn.take() {
                    Some(c) if !c.closed => c,
                    _ => Http1::connect(node).await.ok()?,
                };
                let ok = match c.request("POST", &path, b"failover").await {
                    Ok((200, body)) => {
                        serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v["code"] == 0)
                    }
                    _ => false,
                };
                ok.then_some(c)
            };
            match tokio::time::timeout(self.attempt, attempt).await {
                Ok(Some(c)) => {
                    conn = Some(c);
                    self.acked.fetch_add(1, Ordering::Relaxed);
                    let mut w = lock(&self.watch);
                    if w.first_ack.is_none() && w.killed_at.is_some_and(|k| sent >= k) {
                        w.first_ack = Some(Instant::now());
                    }
                }
                _ => {
                    self.at = (self.at + 1) % self.nodes.len();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
}
