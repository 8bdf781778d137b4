//! The subscriber side of a run, as its own process: the parent re-executes this binary
//! with the hidden `worker` subcommand once per ~15,000 sockets (a process may open 20,000
//! files here). A worker is deliberately lean: one thread, one small task per socket, one
//! shared read buffer, protocol parsers that walk bytes in place (`goim_stream`,
//! `ws_frames`, `nats_stream`), one latency histogram. It prints its progress every 200 ms
//! and, when the parent writes `stop`, its final report (`report.rs`), then exits.
mod body;
mod goim_stream;
pub mod nats_stream;
mod protocol;
pub mod report;
mod socket;
mod stats;
mod ws_frames;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::sync::Semaphore;

use self::protocol::{GoimSub, NatsSub};
use self::report::Report;
use self::socket::Socket;
use self::stats::Stats;
use crate::servers::{System, Transport};

/// The op room pushes are sent with (and the only one subscribers accept).
pub const BENCH_OP: i32 = 1000;
/// How often a worker prints its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    #[arg(long, value_enum)]
    pub system: System,
    #[arg(long, value_enum)]
    pub transport: Transport,
    /// Where subscribers connect, comma-separated; socket i uses target i mod count.
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<SocketAddr>,
    /// Index of this worker's first socket in the whole run (sockets are numbered so
    /// mids and source addresses are unique across workers).
    #[arg(long)]
    pub first: u64,
    #[arg(long)]
    pub count: u64,
    /// Source addresses 127.0.0.1 .. 127.0.0.<sources>; socket i binds to address i mod sources.
    #[arg(long)]
    pub sources: u32,
    /// Connects and handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub handshakes: usize,
    #[arg(long, default_value_t = 30)]
    pub heartbeat_secs: u64,
    /// goim room (`live://<room>`).
    #[arg(long, default_value = "bench")]
    pub room: String,
}

/// The source address of socket `index` among `sources` loopback addresses.
pub fn source_addr(index: u64, sources: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 1)) + (index % u64::from(sources.max(1))) as u32)
}

pub fn main(args: WorkerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!args.targets.is_empty(), "worker: no --targets");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run(args))
}

async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let stats = Rc::new(Stats::new());
    let handshakes = Rc::new(Semaphore::new(args.handshakes.max(1)));
    let heartbeat = Duration::from_secs(args.heartbeat_secs.max(1));
    for index in args.first..args.first + args.count {
        let target = args.targets[(index % args.targets.len() as u64) as usize];
        let socket = Socket {
            source: source_addr(index, args.sources),
            target,
            heartbeat,
            first_heartbeat: Duration::from_millis(index * 7919 % heartbeat.as_millis().max(1) as u64),
        };
        let (stats, handshakes) = (stats.clone(), handshakes.clone());
        match args.system {
            System::Goim => {
                let ws = args.transport == Transport::Ws;
                let sub = GoimSub::new(ws, target.to_string(), index + 1, &args.room, BENCH_OP);
                tokio::task::spawn_local(socket::run(socket, sub, stats, handshakes));
            }
            System::Nats => {
                tokio::task::spawn_local(socket::run(socket, NatsSub::default(), stats, handshakes));
            }
        }
    }
    let progress = stats.clone();
    tokio::task::spawn_local(async move {
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        loop {
            tick.tick().await;
            if emit(&Report::Progress { counts: progress.counts() }).is_err() {
                std::process::exit(1); // the parent is gone
            }
        }
    });
    let mut commands = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = commands.next_line().await? {
        if line.trim() == report::STOP {
            emit(&Report::Final(stats.final_report()))?;
            break;
        }
    }
    // Leave at once: the socket tasks and the blocking stdin reader need no goodbye.
    std::process::exit(0)
}

/// One report line on stdout.
fn emit(report: &Report) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(report)?;
    line.push(b'\n');
    let mut out = std::io::stdout().lock();
    out.write_all(&line)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_spread_over_the_source_addresses() {
        assert_eq!(source_addr(0, 8), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_addr(7, 8), Ipv4Addr::new(127, 0, 0, 8));
        assert_eq!(source_addr(8, 8), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_addr(300, 400), Ipv4Addr::new(127, 0, 1, 45));
    }
}
