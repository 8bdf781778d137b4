//! `goim-bench`: the measurements of docs/BENCHMARKS.md.
//! - `fanout` / `latency`: room fan-out at the limit (open loop) or at a fixed rate, against
//!   a goim the bench starts itself and, with `--peer nats`, against nats-server in the
//!   same command; delivered msgs/s, push → receive percentiles, server CPU per delivery,
//!   RSS per connection, the load generator's own CPU (`load.rs`).
//! - `conns`: N authenticated connections held with heartbeats, memory sampled (`conns.rs`).
//! - `push`: acknowledged pushes/s against logic voters it starts (or running ones), one
//!   message or `--batch N` per request; with `--peer nats` against a 3-node JetStream R3
//!   file stream in the same command (`push.rs`, `jetstream.rs`).
//! - `failover`: leader kills under push load, kill → first acknowledged push (`failover.rs`).
//! - `recover`: a reconnect storm against a running node (`recover.rs`).
//! - `disk`: the fdatasync latency of the disk under a data directory, the floor under push
//!   latency with every write fsync'd before its ack (`disk.rs`).
//! - `plot`: deliveries/s and p99 against subscriber count, drawn from `--json` runs
//!   (`plot.rs`).
//!
//! Subscribers live in worker processes (this binary again, hidden `worker` subcommand,
//! `worker/`), at most ~15,000 sockets each over several source addresses, so one process's
//! 20,000 open files and one address's ports are never the limit.
mod conns;
mod disk;
mod failover;
mod fleet;
mod hist;
mod http1;
mod http2;
mod jetstream;
mod load;
mod plot;
mod procfs;
mod progress;
mod publish;
mod push;
mod recover;
mod report;
mod servers;
mod stamp;
mod worker;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "goim-rs benchmarks (docs/BENCHMARKS.md)")]
enum Bench {
    /// Room fan-out: N subscribers, one publisher, open loop by default (--rate 0).
    Fanout(load::LoadArgs),
    /// Push → receive latency: the fan-out load at a fixed rate (default 50 pushes/s).
    Latency(load::LoadArgs),
    /// Connections at scale: N authenticated connections held S seconds, memory sampled;
    /// the connect storm's auths/s and disk per session (alias `auth`).
    #[command(visible_alias = "auth")]
    Conns(conns::ConnsArgs),
    /// Acknowledged pushes/s: concurrent HTTP pushers against logic voters (and JetStream R3).
    Push(push::PushArgs),
    /// Failover: leader `kill -9`s under push load, kill → first acknowledged push.
    Failover(failover::FailoverArgs),
    /// Reconnect storm: N clients resume at once, each replaying M missed room messages.
    Recover(recover::RecoverArgs),
    /// fdatasync latency of the disk under a directory (a node's data dir): what every
    /// acknowledged push waits for.
    Disk(disk::DiskArgs),
    /// Draws deliveries/s (fanout runs) and p99 (latency runs) against subscriber count
    /// from `--json` output, as SVG.
    Plot(plot::PlotArgs),
    /// A subscriber process of a run (started by the bench itself).
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
}

fn main() -> anyhow::Result<()> {
    let bench = Bench::parse();
    if let Bench::Worker(args) = bench {
        return worker::main(args);
    }
    // The parent only publishes and follows its workers: one thread is plenty, and it
    // leaves the cores to the servers and the subscribers.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let code = runtime.block_on(async {
        match bench {
            Bench::Fanout(args) => load::run(load::Mode::Fanout, args).await,
            Bench::Latency(args) => load::run(load::Mode::Latency, args).await,
            Bench::Conns(args) => conns::run(args).await,
            Bench::Push(args) => push::run(args).await,
            Bench::Failover(args) => failover::run(args).await,
            Bench::Recover(args) => recover::run(args).await.map(|()| 0),
            Bench::Disk(args) => disk::run(args).await,
            Bench::Plot(args) => plot::run(&args).map(|()| 0),
            Bench::Worker(_) => Ok(0),
        }
    })?;
    std::process::exit(code)
}
