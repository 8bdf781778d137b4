//! `goim`: one binary for every role (comet, logic, job) and the client subcommands.
//! With no arguments it runs a one-node cluster with every role on loopback. The command
//! line is docs/OPERATIONS.md §2.
mod auth;
mod cli;
mod clock;
mod comet;
mod config;
mod http;
mod http_server;
mod job;
mod listen;
mod log_limit;
mod logic;
mod node;
mod rate;
mod shutdown;
mod tls;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::Settings;

#[derive(Parser)]
#[command(
    name = "goim",
    version,
    about = "goim push service: comet, logic and job in one self-contained cluster"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Settings for the default `run`.
    #[command(flatten)]
    run: Settings,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (the default).
    Run(Box<Settings>),
    /// Cluster membership and health.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Read the push log.
    Log {
        #[command(subcommand)]
        action: LogAction,
    },
    /// Mint an HS256 client token (for `--auth jwt --jwt-secret S`) and print it.
    Token(cli::token::TokenArgs),
    /// Run a demo cluster on loopback (3 logic, 2 comet, 1 job processes by default) and
    /// print the chat URL; Ctrl-C stops it.
    Demo(cli::demo::DemoArgs),
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Print the cluster status as JSON.
    Status {
        #[command(flatten)]
        target: cli::Target,
    },
    /// Add a logic node as a voter (learner first, promoted once caught up). Start it first
    /// with `goim run --node-id ID --peers <the current voters>`.
    Add {
        #[command(flatten)]
        target: cli::Target,
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// The new node's QUIC address.
        #[arg(long)]
        addr: String,
    },
    /// Remove a logic node from the voters.
    Remove {
        #[command(flatten)]
        target: cli::Target,
        #[arg(long)]
        id: u64,
    },
    /// Write a cluster CA (`ca.pem`, `ca.key`) and a certificate per node (`<name>.pem`,
    /// `<name>.key`) for `--cluster-ca/--cluster-cert/--cluster-key`. Every node certificate
    /// names `goim.cluster`, the name peers verify (they are dialled by IP).
    Certs(cli::cluster::CertsArgs),
}

#[derive(Subcommand)]
enum LogAction {
    /// Print push-log records as JSON lines.
    Tail {
        #[command(flatten)]
        target: cli::Target,
        /// First seq to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Keep printing new records as they are committed.
        #[arg(long)]
        follow: bool,
    },
}

/// glibc's malloc spent about a third of a busy logic node's CPU in its own bookkeeping
/// (`_int_malloc`, `unlink_chunk`: docs/BENCHMARKS.md); jemalloc does not.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options: a background thread gives freed pages back to the kernel within
/// about a second, so RSS follows what is in use; each thread's cache keeps only objects
/// up to 1 KiB. A thread's cache is trimmed only as that thread allocates, so the cache of
/// a thread that went quiet after a burst (an auth storm) stays full: with the default
/// 32 KiB bound a logic node in its own process kept about 0.6 KB more per session
/// (docs/BENCHMARKS.md, "Idle connections").
/// `_RJEM_MALLOC_CONF` in the environment overrides these.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 76] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,tcache_max:1024\0";

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("goim: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            None => run(cli.run).await,
            Some(Command::Run(settings)) => run(*settings).await,
            Some(Command::Cluster { action }) => match action {
                ClusterAction::Status { target } => cli::cluster::status(&target).await,
                ClusterAction::Add { target, id, addr } => cli::cluster::add(&target, id, &addr).await,
                ClusterAction::Remove { target, id } => cli::cluster::remove(&target, id).await,
                ClusterAction::Certs(args) => cli::cluster::certs(&args),
            },
            Some(Command::Log { action: LogAction::Tail { target, from, follow } }) => {
                cli::log::tail(&target, from, follow).await
            }
            Some(Command::Token(args)) => cli::token::mint(&args),
            Some(Command::Demo(args)) => cli::demo::run(&args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<DataDamaged>() {
            Some(damaged) => {
                eprintln!("goim: {damaged}");
                std::process::ExitCode::from(DataDamaged::EXIT_CODE)
            }
            None => {
                eprintln!("goim: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}

/// The node refused to start because its data on disk is damaged: one line saying which
/// file, what is wrong and what the operator can do; exit code 3.
#[derive(Debug)]
struct DataDamaged(String);

impl DataDamaged {
    const EXIT_CODE: u8 = 3;

    /// `Some` if `e` was caused by damaged data.
    fn from_error(e: &anyhow::Error, cfg: &config::Config) -> Option<DataDamaged> {
        let (path, what) = e
            .chain()
            .find_map(|c| c.downcast_ref::<goim_storage::StorageError>())
            .and_then(goim_storage::StorageError::damage)?;
        let (id, dir) = (cfg.node_id, cfg.data_dir.display());
        Some(DataDamaged(format!(
            "data damaged: {}: {what}; refusing to start on it. In a cluster: remove this node \
             from the voters (`goim cluster remove --http <a healthy node> --id {id}`), wipe {dir}, \
             start it as a new node (a new --node-id, --peers naming the current voters) and add it \
             (`goim cluster add --http <a healthy node> --id <new id> --addr {}`): it copies \
             everything from its peers. A single node: restore {dir} from a backup.",
            path.display(),
            cfg.quic_addr
        )))
    }
}

impl std::fmt::Display for DataDamaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DataDamaged {}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let cfg = settings.load()?;
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log)
        .with_context(|| format!("--log {:?}: not a log filter (e.g. info,openraft=warn)", cfg.log))?;
    tracing_subscriber::registry()
        .with(filter)
        .with(log_limit::RepeatLimit::new(listen::LOG_INTERVAL))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
    auth::log_posture(&cfg);
    // Only ring is compiled in (rustls and quinn features, Cargo.toml); installing it makes
    // that explicit.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().ok();
    let cfg_copy = cfg.clone();
    node::run(cfg, prometheus).await.map_err(|e| match DataDamaged::from_error(&e, &cfg_copy) {
        Some(damaged) => damaged.into(),
        None => e,
    })
}
