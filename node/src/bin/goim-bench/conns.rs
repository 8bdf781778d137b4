//! `conns`: N authenticated connections (heartbeats every 30 s) held for S seconds while
//! the server's RSS is sampled every 10 s: memory per connection, whether it stays flat,
//! and whether every connection stayed up. With `--peer nats`, the same for nats-server.
//! Also the connect storm itself (`goim-bench auth` is this command): authenticated
//! connections per second, and the servers' disk growth per connection (with `--voters 3`,
//! every session replicated and fsync'd on a majority before its auth reply).
use std::time::Duration;

use tokio::time::Instant;

use crate::fleet::Fleet;
use crate::load::RunArgs;
use crate::procfs;
use crate::progress;
use crate::report::{self, row, thousands, ConnsResult, Row};
use crate::servers::Running;
use crate::stamp;

#[derive(clap::Args, Debug, Clone)]
pub struct ConnsArgs {
    /// Connections.
    #[arg(long, default_value_t = 10_000)]
    pub clients: u64,
    /// Seconds to hold them once all are authenticated.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Seconds between server memory samples.
    #[arg(long, default_value_t = 10)]
    pub sample_every: u64,
    #[command(flatten)]
    pub run: RunArgs,
}

pub async fn run(args: ConnsArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    let mut results = Vec::new();
    for system in args.run.peer.systems() {
        let server = args.run.servers.start(system, args.run.transport).await?;
        let result = hold(&server, &args).await;
        drop(server);
        results.push(result?);
    }
    let layout = args.run.layout.layout(args.clients);
    let title = format!(
        "conns: {} connections ({}, heartbeats every 30 s) held {} s; {} worker processes over {} source addresses",
        thousands(args.clients),
        args.run.transport,
        args.seconds,
        layout.workers,
        layout.sources
    );
    let names: Vec<String> = results.iter().map(|r| r.server.clone()).collect();
    let rows = table_rows(&results);
    let object = serde_json::json!({
        "bench": "conns",
        "unix_time": stamp::now_ns() / 1_000_000_000,
        "clients": args.clients,
        "seconds": args.seconds,
        "transport": args.run.transport,
        "workers": layout.workers,
        "sources": layout.sources,
        "systems": results,
    });
    report::emit(args.run.json, &title, &names, &rows, object)?;
    let dropped: Vec<String> = results
        .iter()
        .filter(|r| !r.all_stayed_connected)
        .map(|r| format!("{} lost {} of {}: {:?}", r.system, r.lost, r.connections, r.errors))
        .collect();
    if dropped.is_empty() {
        return Ok(0);
    }
    eprintln!("not every connection stayed up: {}", dropped.join("; "));
    Ok(2)
}

fn table_rows(r: &[ConnsResult]) -> Vec<Row> {
    vec![
        row("connections", r, |x| thousands(x.subscribed)),
        row("connect + auth s", r, |x| format!("{:.1}", x.connect_s)),
        row("auths/s", r, |x| thousands(x.auths_per_s as u64)).ratio(r, |x| x.auths_per_s),
        row("disk KB per connection", r, |x| format!("{:.2}", x.disk_per_conn_kb)),
        row("server RSS MB before", r, |x| format!("{:.1}", x.server_rss_before_mb)),
        row("server RSS MB samples", r, |x| {
            x.server_rss_samples_mb.iter().map(|(_, m)| format!("{m:.0}")).collect::<Vec<_>>().join(" ")
        }),
        row("server RSS KB per connection", r, |x| format!("{:.2}", x.server_rss_per_conn_kb))
            .ratio(r, |x| x.server_rss_per_conn_kb),
        row("server RSS growth MB over the hold", r, |x| format!("{:+.1}", x.server_rss_growth_mb)),
        row("server CPU s during the hold", r, |x| format!("{:.2}", x.server_cpu_s_during_hold)),
        row("heartbeat replies", r, |x| thousands(x.heartbeat_replies)),
        row("connections lost", r, |x| thousands(x.lost)),
        row("load generator CPU s / RSS MB", r, |x| {
            format!("{:.1} / {:.0}", x.loadgen_cpu_s, x.loadgen_rss_mb)
        }),
    ]
}

async fn hold(server: &Running, args: &ConnsArgs) -> anyhow::Result<ConnsResult> {
    let system = server.system;
    let rss_before = procfs::rss_bytes_of(&server.pids);
    let disk_before = server.disk_bytes();
    let fleet =
        Fleet::spawn(system, args.run.transport, &server.sub_addrs, args.run.layout.layout(args.clients))?;
    let loadgen_pids = fleet.loadgen_pids();
    let loadgen_cpu0 = procfs::cpu_seconds_of(&loadgen_pids);
    let (fleet, connect_s) = fleet.wait_subscribed(system, args.clients).await?;
    let server_cpu0 = procfs::cpu_seconds_of(&server.pids);
    let started = Instant::now();
    let every = Duration::from_secs(args.sample_every.max(1));
    let bar = progress::bar(format!("{system} hold"), args.seconds);
    let mut samples = Vec::new();
    let mut next_sample = started;
    loop {
        let now = Instant::now();
        if now >= next_sample {
            let rss = procfs::mib(procfs::rss_bytes_of(&server.pids));
            samples.push((now.duration_since(started).as_secs_f64(), rss));
            next_sample += every;
        }
        let held = now.duration_since(started).as_secs();
        let c = fleet.counts();
        bar.set_position(held.min(args.seconds));
        bar.set_message(format!(
            "{} up, {} lost, server RSS {:.0} MB",
            c.subscribed - c.closed,
            c.closed,
            samples.last().map_or(0.0, |s| s.1)
        ));
        if held >= args.seconds {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rss_end = procfs::rss_bytes_of(&server.pids);
    let disk_growth = server.disk_bytes().saturating_sub(disk_before);
    samples.push((started.elapsed().as_secs_f64(), procfs::mib(rss_end)));
    let server_cpu = procfs::cpu_seconds_of(&server.pids) - server_cpu0;
    let loadgen_rss =
        procfs::mib(procfs::rss_bytes_of(fleet.pids()) + procfs::rss_bytes(std::process::id()).unwrap_or(0));
    let loadgen_cpu = procfs::cpu_seconds_of(&loadgen_pids) - loadgen_cpu0;
    let finals = fleet.stop().await?;
    let mut counts = crate::worker::report::Counts::default();
    let mut errors = Vec::new();
    for f in &finals {
        counts.add(&f.counts);
        errors.extend(f.errors.iter().cloned());
    }
    progress::done(
        bar,
        format!(
            "{system}: held {} connections {} s, {} lost",
            thousands(counts.subscribed),
            args.seconds,
            counts.closed
        ),
    );
    let first = samples.first().map_or(0.0, |s| s.1);
    Ok(ConnsResult {
        system: system.to_string(),
        server: server.label.clone(),
        connections: args.clients,
        subscribed: counts.subscribed,
        connect_s,
        auths_per_s: counts.subscribed as f64 / connect_s.max(1e-9),
        disk_per_conn_kb: disk_growth as f64 / 1024.0 / args.clients as f64,
        held_s: started.elapsed().as_secs_f64(),
        server_rss_before_mb: procfs::mib(rss_before),
        server_rss_per_conn_kb: rss_end.saturating_sub(rss_before) as f64 / 1024.0 / args.clients as f64,
        server_rss_growth_mb: procfs::mib(rss_end) - first,
        server_rss_samples_mb: samples,
        server_cpu_s_during_hold: server_cpu,
        lost: counts.closed,
        heartbeat_replies: counts.heartbeats,
        all_stayed_connected: counts.closed == 0 && counts.subscribed == args.clients,
        loadgen_cpu_s: loadgen_cpu,
        loadgen_rss_mb: loadgen_rss,
        errors,
    })
}
