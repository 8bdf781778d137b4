//! `fanout` and `latency`: N subscribers in one room (goim) or on one subject (NATS), one
//! publisher, 64-byte stamped messages, open loop or a fixed rate for S seconds, then a
//! drain. Per system: delivered msgs/s, the fraction delivered by the deadline,
//! push → receive percentiles, server CPU per delivery and RSS per connection, and the
//! load generator's own CPU. With `--peer nats` the same load runs against nats-server
//! in the same command and the table puts them side by side.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::fleet::{Fleet, Layout};
use crate::hist::Latencies;
use crate::procfs;
use crate::progress;
use crate::publish::{self, Schedule};
use crate::report::{self, row, thousands, LoadResult, Row};
use crate::servers::{Peer, Running, ServerArgs, System, Transport};
use crate::stamp;

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Subscribers.
    #[arg(long, default_value_t = 1000)]
    pub clients: u64,
    /// Pushes per second in all; 0: open loop, as fast as the system takes them
    /// (default: 0 for fanout, 50 for latency).
    #[arg(long)]
    pub rate: Option<u32>,
    /// Seconds of pushing.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Body bytes per message (the send stamp included).
    #[arg(long, default_value_t = 64)]
    pub body: usize,
    /// Seconds to wait for deliveries after the last push.
    #[arg(long, default_value_t = 10)]
    pub drain: u64,
    /// goim: concurrent HTTP push connections (keep-alive).
    #[arg(long, default_value_t = 8)]
    pub http_workers: usize,
    /// Exit 0 even when not every message was delivered.
    #[arg(long)]
    pub allow_loss: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// What `fanout`, `latency` and `conns` share: the transport, the systems, the report, where
/// the sockets come from and which servers.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// goim subscribers' transport (NATS subscribers always speak its TCP protocol).
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// Also run the same load against nats-server and compare.
    #[arg(long, value_enum, default_value_t = Peer::None)]
    pub peer: Peer,
    /// Print one JSON object for the run on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[command(flatten)]
    pub servers: ServerArgs,
}

/// Where the subscribers' sockets come from.
#[derive(clap::Args, Debug, Clone)]
pub struct LayoutArgs {
    /// Source addresses 127.0.0.1 .. 127.0.0.N the sockets bind to (raised so none
    /// carries more than 20,000).
    #[arg(long, default_value_t = 8)]
    pub sources: u32,
    /// Most sockets per worker process (a process may open 20,000 files here).
    #[arg(long, default_value_t = 15_000)]
    pub per_worker: u64,
    /// Worker processes (default: enough for --per-worker, at least 2).
    #[arg(long)]
    pub workers: Option<u64>,
}

impl LayoutArgs {
    pub fn layout(&self, clients: u64) -> Layout {
        Layout::new(clients, self.per_worker, self.workers, self.sources)
    }
}

/// Which subcommand: they differ in their default rate and in what the summary stresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Fanout,
    Latency,
}

/// Pause after the last subscription before memory is read (let the servers settle).
const SETTLE: Duration = Duration::from_secs(1);

pub async fn run(mode: Mode, args: LoadArgs) -> anyhow::Result<i32> {
    let rate = args.rate.unwrap_or(if mode == Mode::Fanout { 0 } else { 50 });
    anyhow::ensure!(mode == Mode::Fanout || rate > 0, "latency needs a fixed --rate (open loop is `fanout`)");
    anyhow::ensure!(args.clients > 0 && args.seconds > 0, "--clients and --seconds must be at least 1");
    anyhow::ensure!(
        args.body >= stamp::STAMP_LEN,
        "--body must hold the {}-byte send stamp",
        stamp::STAMP_LEN
    );
    let schedule = Schedule { rate, seconds: args.seconds, body: args.body };
    let layout = args.run.layout.layout(args.clients);
    let mut results = Vec::new();
    for system in args.run.peer.systems() {
        let server = args.run.servers.start(system, args.run.transport).await?;
        let result = measure(&server, &args, schedule, layout).await;
        drop(server);
        results.push(result?);
    }

    let name = if mode == Mode::Fanout { "fanout" } else { "latency" };
    let title = format!(
        "{name}: {} subscribers ({}), {}, {} s, {}-byte bodies; {} worker processes over {} source addresses",
        thousands(args.clients),
        args.run.transport,
        if rate == 0 { "open loop".to_string() } else { format!("{rate} pushes/s") },
        args.seconds,
        args.body,
        layout.workers,
        layout.sources
    );
    let names: Vec<String> = results.iter().map(|r| r.server.clone()).collect();
    let rows = table_rows(&results);
    let ratios = |f: fn(&LoadResult) -> f64| match results.as_slice() {
        [a, b] if f(b) != 0.0 => serde_json::json!(f(a) / f(b)),
        _ => serde_json::Value::Null,
    };
    let object = serde_json::json!({
        "bench": name,
        "unix_time": stamp::now_ns() / 1_000_000_000,
        "clients": args.clients,
        "rate": rate,
        "seconds": args.seconds,
        "transport": args.run.transport,
        "body": args.body,
        "workers": layout.workers,
        "sources": layout.sources,
        "systems": results,
        "ratios_goim_over_nats": {
            "delivered_per_s": ratios(|r| r.delivered_per_s),
            "server_cpu_s_per_million": ratios(|r| r.server_cpu_s_per_million),
            "p50": ratios(|r| r.latency.p50_ms),
            "p99": ratios(|r| r.latency.p99_ms),
        },
    });
    report::emit(args.run.json, &title, &names, &rows, object)?;

    let short: Vec<String> = results
        .iter()
        .filter(|r| r.delivered < r.expected || r.expected == 0 || r.subscribers_lost > 0)
        .map(|r| {
            format!(
                "{} delivered {} of {} ({:.2}%)",
                r.system,
                r.delivered,
                r.expected,
                100.0 * r.delivered_fraction
            )
        })
        .collect();
    if short.is_empty() {
        return Ok(0);
    }
    eprintln!("not every message was delivered by the deadline: {}", short.join("; "));
    for r in &results {
        for e in &r.errors {
            eprintln!("  {}: {e}", r.system);
        }
    }
    Ok(if args.allow_loss { 0 } else { 2 })
}

fn table_rows(r: &[LoadResult]) -> Vec<Row> {
    vec![
        row("subscribers", r, |x| thousands(x.subscribers)),
        row("pushes acked / sent", r, |x| {
            format!("{} / {}", thousands(x.pushes_acked), thousands(x.pushes_sent))
        }),
        row("pushes/s", r, |x| format!("{:.0}", x.pushes_per_s)).ratio(r, |x| x.pushes_per_s),
        row("delivered by the deadline", r, |x| format!("{:.2}%", 100.0 * x.delivered_fraction)),
        row("delivered msgs/s", r, |x| thousands(x.delivered_per_s as u64)).ratio(r, |x| x.delivered_per_s),
        row("latency p50 ms", r, |x| format!("{:.1}", x.latency.p50_ms)).ratio(r, |x| x.latency.p50_ms),
        row("latency p99 ms", r, |x| format!("{:.1}", x.latency.p99_ms)).ratio(r, |x| x.latency.p99_ms),
        row("latency p99.9 ms", r, |x| format!("{:.1}", x.latency.p999_ms)).ratio(r, |x| x.latency.p999_ms),
        row("latency max ms", r, |x| format!("{:.1}", x.latency.max_ms)),
        row("subscribers lost", r, |x| thousands(x.subscribers_lost)),
        row("server CPU s", r, |x| format!("{:.2}", x.server_cpu_s)),
        row("server CPU µs / delivery", r, |x| format!("{:.3}", x.server_cpu_s_per_million))
            .ratio(r, |x| x.server_cpu_s_per_million),
        row("server RSS MB before → after subs", r, |x| {
            format!("{:.0} → {:.0}", x.server_rss_before_mb, x.server_rss_after_mb)
        }),
        row("server RSS KB per connection", r, |x| format!("{:.2}", x.server_rss_per_conn_kb))
            .ratio(r, |x| x.server_rss_per_conn_kb),
        row("load generator CPU s", r, |x| format!("{:.2}", x.loadgen_cpu_s)),
        row("other processes' CPU s: normal / niced", r, |x| {
            format!("{:.2} / {:.2}", x.other_cpu_s, x.niced_cpu_s)
        }),
        row("CPU window s (2 cores)", r, |x| format!("{:.1}", x.cpu_window_s)),
    ]
}

async fn measure(
    server: &Running,
    args: &LoadArgs,
    schedule: Schedule,
    layout: Layout,
) -> anyhow::Result<LoadResult> {
    let system = server.system;
    let rss_before = procfs::rss_bytes_of(&server.pids);
    let fleet = Fleet::spawn(system, args.run.transport, &server.sub_addrs, layout)?;
    let (fleet, _) = fleet.wait_subscribed(system, args.clients).await?;
    tokio::time::sleep(SETTLE).await;
    let rss_after = procfs::rss_bytes_of(&server.pids);

    let loadgen_pids = fleet.loadgen_pids();
    let (server_cpu0, loadgen_cpu0) =
        (procfs::cpu_seconds_of(&server.pids), procfs::cpu_seconds_of(&loadgen_pids));
    let machine_cpu0 = procfs::machine_busy_seconds().unwrap_or_default();
    let acked = Arc::new(AtomicU64::new(0));
    let push_started = Instant::now();
    let deadline = push_started + Duration::from_secs(args.seconds + args.drain);
    let publisher = {
        let (acked, addr) = (acked.clone(), server.publish_addr);
        let workers = args.http_workers;
        tokio::spawn(async move {
            match system {
                System::Goim => publish::goim(addr, "bench", schedule, workers, acked).await,
                System::Nats => publish::nats(addr, schedule, acked, deadline).await,
            }
        })
    };
    let push_bar = progress::bar(format!("{system} push"), args.seconds);
    while !publisher.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        push_bar.set_position(push_started.elapsed().as_secs().min(args.seconds));
        push_bar.set_message(format!(
            "{} pushes, {} delivered",
            acked.load(Ordering::Relaxed),
            fleet.counts().received
        ));
    }
    let published = publisher.await?;
    let push_secs = published.last_ns.saturating_sub(published.first_ns) as f64 / 1e9;
    progress::done(
        push_bar,
        format!("{system}: {} pushes acked of {} sent in {push_secs:.1} s", published.acked, published.sent),
    );

    let expected = published.acked * args.clients;
    let drain_bar = progress::bar(format!("{system} drain"), expected);
    loop {
        let received = fleet.counts().received;
        drain_bar.set_position(received);
        if received >= expected || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server_cpu = procfs::cpu_seconds_of(&server.pids) - server_cpu0;
    let loadgen_cpu = procfs::cpu_seconds_of(&loadgen_pids) - loadgen_cpu0;
    let machine_cpu = procfs::machine_busy_seconds().unwrap_or_default();
    let (machine_cpu, niced_cpu) = (machine_cpu.0 - machine_cpu0.0, machine_cpu.1 - machine_cpu0.1);
    let cpu_window = push_started.elapsed().as_secs_f64();
    let finals = fleet.stop().await?;
    let (mut latencies, mut counts) = (Latencies::new(), crate::worker::report::Counts::default());
    let (mut last_ns, mut errors) = (0, published.errors.clone());
    for f in &finals {
        latencies.add(&f.latencies);
        counts.add(&f.counts);
        last_ns = last_ns.max(f.last_ns);
        errors.extend(f.errors.iter().cloned());
    }
    progress::done(
        drain_bar,
        format!("{system}: {} of {} deliveries", thousands(counts.received), thousands(expected)),
    );
    let window = last_ns.saturating_sub(published.first_ns) as f64 / 1e9;
    let delivered = counts.received;
    Ok(LoadResult {
        system: system.to_string(),
        server: server.label.clone(),
        subscribers: counts.subscribed,
        pushes_sent: published.sent,
        pushes_acked: published.acked,
        pushes_per_s: published.acked as f64 / push_secs.max(1e-9),
        expected,
        delivered,
        delivered_fraction: if expected == 0 { 0.0 } else { (delivered as f64 / expected as f64).min(1.0) },
        delivered_per_s: if window > 0.0 { delivered as f64 / window } else { 0.0 },
        first_push_to_last_delivery_s: window,
        latency: latencies.percentiles(),
        subscribers_lost: counts.closed,
        server_cpu_s: server_cpu,
        server_cpu_s_per_million: if delivered == 0 { 0.0 } else { server_cpu * 1e6 / delivered as f64 },
        server_rss_before_mb: procfs::mib(rss_before),
        server_rss_after_mb: procfs::mib(rss_after),
        server_rss_per_conn_kb: rss_after.saturating_sub(rss_before) as f64 / 1024.0 / args.clients as f64,
        loadgen_cpu_s: loadgen_cpu,
        cpu_window_s: cpu_window,
        other_cpu_s: (machine_cpu - server_cpu - loadgen_cpu).max(0.0),
        niced_cpu_s: niced_cpu,
        errors,
    })
}
