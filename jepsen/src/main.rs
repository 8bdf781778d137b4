//! `goim-jepsen`: runs the real `goim` binary as a cluster of network-namespace hosts,
//! injects faults (the nemeses) while a workload pushes and clients receive, then checks
//! the history: nothing acknowledged lost, nothing duplicated, reordered or unexpected, and
//! every replica's push log the same. Exit code: 0 valid, 1 invalid, 2 cannot run.
mod checker;
mod cluster;
mod firewall;
mod history;
mod hosts;
mod nemesis;
mod procs;
mod progress;
mod proxy;
mod report;
mod run;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "goim-jepsen", version, about = "fault injection for a goim-rs cluster, with a checker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one test (needs root: it creates network namespaces and nftables rules).
    Test(TestArgs),
    /// Check a results dir again (history.jsonl + replicas.json) and rewrite its report.
    Check {
        #[arg(long)]
        results: PathBuf,
    },
}

#[derive(clap::Args)]
struct TestArgs {
    /// Seconds of workload under faults (healing and the quiet period come after).
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// Faults: kill, pause, partition, loss, slow, corrupt, member, or all (comma-separated).
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Seconds between faults (each is held for half to all of it).
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Where history.jsonl, summary.json, timeline.svg and node logs go.
    #[arg(long, default_value = "jepsen-results")]
    results: PathBuf,
    /// Logic voters.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    #[arg(long, default_value_t = 2)]
    comets: usize,
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Seed of every random choice (faults, targets, workload); default: from the clock.
    #[arg(long)]
    seed: Option<u64>,
    /// The goim binary; default: `goim` beside this binary.
    #[arg(long)]
    goim: Option<PathBuf>,
    /// Run the logic nodes in their deliberately unsafe mode (acknowledge pushes before
    /// they commit): the checker must find lost pushes.
    #[arg(long = "unsafe")]
    unsafe_mode: bool,
    /// Pushes per second, all pushers together.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    #[arg(long, default_value_t = 8)]
    pushers: usize,
    #[arg(long, default_value_t = 3)]
    rooms: usize,
    #[arg(long, default_value_t = 3)]
    clients_per_room: usize,
    /// Longest wait, after healing, for every replica and the job to converge.
    #[arg(long, default_value_t = 60)]
    quiet: u64,
    /// Keep the nodes' data dirs after a run (they are deleted otherwise; logs are kept).
    #[arg(long)]
    keep_data: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("goim-jepsen: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Test(args) => runtime.block_on(test(args)),
        Command::Check { results } => check(&results),
    }
}

async fn test(args: TestArgs) -> ExitCode {
    if let Err(why) = hosts::require_root() {
        eprintln!("goim-jepsen: {why}");
        return ExitCode::from(2);
    }
    let nemesis = match nemesis::Kind::parse_list(&args.nemesis) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("goim-jepsen: {e}");
            return ExitCode::from(2);
        }
    };
    let goim = match args.goim.clone().or_else(beside_me) {
        Some(p) if p.exists() => p,
        other => {
            eprintln!(
                "goim-jepsen: no goim binary at {} (build it with `cargo build -p goim` or pass --goim)",
                other.map(|p| p.display().to_string()).unwrap_or_default()
            );
            return ExitCode::from(2);
        }
    };
    if args.nodes == 0 || args.comets == 0 || args.jobs == 0 || args.rooms == 0 || args.pushers == 0 {
        eprintln!("goim-jepsen: --nodes, --comets, --jobs, --rooms and --pushers must be at least 1");
        return ExitCode::from(2);
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let opts = run::Opts {
        time: Duration::from_secs(args.time),
        nemesis,
        interval: Duration::from_secs(args.interval.max(1)),
        results: args.results.clone(),
        nodes: args.nodes,
        comets: args.comets,
        jobs: args.jobs,
        seed,
        goim,
        unsafe_mode: args.unsafe_mode,
        rate: args.rate,
        pushers: args.pushers,
        rooms: args.rooms,
        clients_per_room: args.clients_per_room,
        quiet: Duration::from_secs(args.quiet),
        keep_data: args.keep_data,
    };
    eprintln!("goim-jepsen: seed {seed}, results in {}", args.results.display());
    match run::test(opts).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("goim-jepsen: the test could not run: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check(results: &std::path::Path) -> ExitCode {
    let run = || -> anyhow::Result<bool> {
        let events = history::read(&results.join("history.jsonl"))?;
        let state: checker::FinalState =
            serde_json::from_slice(&std::fs::read(results.join("replicas.json"))?)?;
        let summary = checker::check(&events, &state);
        report::write(results, &events, &summary)?;
        checker::print_verdict(&summary);
        Ok(summary.valid)
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("goim-jepsen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn beside_me() -> Option<PathBuf> {
    Some(std::env::current_exe().ok()?.parent()?.join("goim"))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn signals() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
