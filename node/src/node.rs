//! Starts the roles this process was asked for, in dependency order (QUIC endpoint, logic,
//! comet, job, HTTP), and stops them gracefully on SIGTERM / Ctrl-C: the job commits and
//! releases its lease, comets close connections, Raft shuts down, peers are told.
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use goim_net::quic::{ClusterTls, QuicEndpoint};
use goim_net::rpc::logic_client::LogicClient;
use goim_raft::{Cluster, ClusterConfig};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::comet::{self, CometConfig};
use crate::config::{Config, Role, RPC_TIMEOUT};
use crate::http::{self, Health};
use crate::http_server::HttpLimits;
use crate::job::{self, JobConfig};
use crate::listen;
use crate::logic::Logic;
use crate::tls::ClientTls;

pub async fn run(
    cfg: Config,
    prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> anyhow::Result<()> {
    // Read the token key first: a bad key file stops the node before anything starts.
    let client_auth = crate::auth::ClientAuth::from_config(&cfg).context("client auth")?;
    let client_tls = if cfg.client_tls() {
        let tls = ClientTls::from_pem_files(&cfg.tls_cert, &cfg.tls_key)
            .context("client TLS (--tls-cert/--tls-key)")?;
        info!(cert = %cfg.tls_cert.display(), wss = %cfg.wss_addr, https = %cfg.https_addr, "TLS for clients and the API");
        Some(tls)
    } else {
        None
    };
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let tls = if cfg.cluster_mtls() {
        let tls = ClusterTls::from_pem_files(&cfg.cluster_ca, &cfg.cluster_cert, &cfg.cluster_key)
            .context("cluster mTLS (--cluster-ca/--cluster-cert/--cluster-key)")?;
        info!(ca = %cfg.cluster_ca.display(), cert = %cfg.cluster_cert.display(), "cluster mTLS: QUIC peers need a certificate from the cluster CA");
        tls
    } else {
        ClusterTls::load_or_generate(&cfg.data_dir).context("cluster TLS certificate")?
    };
    let endpoint =
        QuicEndpoint::bind(cfg.quic_addr, &tls).with_context(|| format!("binding QUIC {}", cfg.quic_addr))?;
    let shutdown = CancellationToken::new();

    let logic = if cfg.has(Role::Logic) {
        let cluster =
            Cluster::start(ClusterConfig::from(&cfg), endpoint.clone()).await.context("starting raft")?;
        Some(Logic::start(&cfg, cluster, &endpoint, shutdown.clone()))
    } else {
        None
    };

    let comet_runtime = if cfg.has(Role::Comet) && (cfg.has(Role::Logic) || cfg.has(Role::Job)) {
        Some(comet_runtime(cfg.comet_threads).context("starting the comet's runtime")?)
    } else {
        None
    };
    let logic_client = Arc::new(LogicClient::new(endpoint.clone(), cfg.logic_addrs(), RPC_TIMEOUT));
    if cfg.has(Role::Comet) {
        let comet_cfg = CometConfig::from_config(&cfg, client_auth, client_tls.clone());
        let starting = comet::start(comet_cfg, endpoint.clone(), cfg.logic_addrs(), shutdown.clone());
        match &comet_runtime {
            Some(rt) => rt.spawn(starting).await.context("comet runtime")?,
            None => starting.await,
        }
        .context("starting comet")?;
    }
    let job =
        cfg.has(Role::Job).then(|| job::start(JobConfig::from(&cfg), logic_client.clone(), shutdown.clone()));

    let app = http::router(Health { roles: cfg.roles.to_string(), logic: logic.clone() }, prometheus);
    let limits = HttpLimits::from(&cfg);
    let listener = listen::bind(cfg.http_addr, cfg.listen_backlog)
        .with_context(|| format!("binding HTTP {}", cfg.http_addr))?;
    info!(node = cfg.node_id, roles = %cfg.roles, http = %cfg.http_addr, tcp = %cfg.tcp_addr, ws = %cfg.ws_addr, quic = %cfg.quic_addr, "goim node started");
    let secure = match client_tls {
        Some(tls) => {
            let listener = listen::bind(cfg.https_addr, cfg.listen_backlog)
                .with_context(|| format!("binding HTTPS {}", cfg.https_addr))?;
            let serving = crate::http_server::serve(
                listener,
                app.clone(),
                limits,
                Some(tls.offering_h2()),
                shutdown.clone(),
            );
            Some(tokio::spawn(serving))
        }
        None => None,
    };
    let server = tokio::spawn(crate::http_server::serve(listener, app, limits, None, shutdown.clone()));

    crate::shutdown::signalled().await;
    info!("shutting down");
    shutdown.cancel();
    if let Some(job) = job {
        let _ = tokio::time::timeout(Duration::from_secs(5), job).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), server).await;
    if let Some(secure) = secure {
        let _ = tokio::time::timeout(Duration::from_secs(1), secure).await;
    }
    if let Some(logic) = logic {
        logic.cluster.shutdown().await;
    }
    endpoint.shutdown().await;
    if let Some(rt) = comet_runtime {
        // Its connections were closed with the shutdown token; what is left is dropped.
        rt.shutdown_background();
    }
    info!("stopped");
    Ok(())
}

/// The runtime a comet sharing its process with logic or a job runs on: its own worker
/// threads, so that fanning a push out to thousands of connections (thousands of ready
/// tasks) does not queue Raft, the push API's acks and the job behind it. On one shared
/// runtime a 10k-subscriber room took 30 pushes/s; on its own, as many as a comet-only
/// process (docs/BENCHMARKS.md, issue [perf-fanout]).
fn comet_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    builder.thread_name("goim-comet").enable_all().build()
}

#[cfg(test)]
mod tests {
    use super::comet_runtime;

    #[test]
    fn a_shared_comet_gets_a_thread_per_core_unless_told() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let default = comet_runtime(0).expect("runtime");
        assert_eq!(default.metrics().num_workers(), cores);
        let three = comet_runtime(3).expect("runtime");
        assert_eq!(three.metrics().num_workers(), 3);
    }
}
