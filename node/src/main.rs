//! `goim`: one binary for every role (comet, logic, job) and the client subcommands.
//! With no arguments it runs a one-node cluster with every role on loopback. The command
//! line is DESIGN.md §7.
mod cli;
mod clock;
mod comet;
mod config;
mod http;
mod job;
mod logic;
mod node;
mod shutdown;

use clap::{Parser, Subcommand};

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
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Print the cluster status as JSON.
    Status {
        #[arg(long, default_value = "127.0.0.1:3111")]
        http: String,
    },
    /// Add a logic node as a voter (learner first, promoted once caught up). Start it first
    /// with `goim run --node-id ID --peers <the current voters>`.
    Add {
        #[arg(long, default_value = "127.0.0.1:3111")]
        http: String,
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// The new node's QUIC address.
        #[arg(long)]
        addr: String,
    },
    /// Remove a logic node from the voters.
    Remove {
        #[arg(long, default_value = "127.0.0.1:3111")]
        http: String,
        #[arg(long)]
        id: u64,
    },
}

#[derive(Subcommand)]
enum LogAction {
    /// Print push-log records as JSON lines.
    Tail {
        #[arg(long, default_value = "127.0.0.1:3111")]
        http: String,
        /// First seq to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Keep printing new records as they are committed.
        #[arg(long)]
        follow: bool,
    },
}

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
                ClusterAction::Status { http } => cli::cluster::status(&http).await,
                ClusterAction::Add { http, id, addr } => cli::cluster::add(&http, id, &addr).await,
                ClusterAction::Remove { http, id } => cli::cluster::remove(&http, id).await,
            },
            Some(Command::Log { action: LogAction::Tail { http, from, follow } }) => {
                cli::log::tail(&http, from, follow).await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("goim: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let cfg = settings.load()?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cfg.log).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Only ring is compiled in; installing it makes that explicit (see STACK.md).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().ok();
    node::run(cfg, prometheus).await
}
