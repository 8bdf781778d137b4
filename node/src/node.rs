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

use crate::comet::admission::ClientLimits;
use crate::comet::{self, CometConfig, SlowConsumer};
use crate::config::{Config, Role};
use crate::http::{self, Health};
use crate::http_server::HttpLimits;
use crate::job::{self, JobConfig};
use crate::listen;
use crate::logic::Logic;
use crate::rate::Rate;
use crate::tls::ClientTls;

/// One attempt of a comet/job call to a logic node; past it the next node is tried (a
/// dead node is not noticed sooner: its QUIC connection only idles out after 5 s).
const RPC_TIMEOUT: Duration = Duration::from_secs(3);

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
        let mut rc = ClusterConfig::new(cfg.node_id, cfg.data_dir.clone(), cfg.quic_addr.to_string());
        rc.peers = cfg.peer_map()?;
        rc.heartbeat_ms = cfg.raft_heartbeat_ms;
        rc.election_min_ms = cfg.raft_election_min_ms;
        rc.election_max_ms = cfg.raft_election_max_ms;
        rc.snapshot_every = cfg.snapshot_every;
        rc.batches_in_flight = cfg.raft_batches_in_flight;
        rc.about = serde_json::json!({ "roles": cfg.roles, "http": cfg.http_addr.to_string() }).to_string();
        let cluster = Cluster::start(rc, endpoint.clone()).await.context("starting raft")?;
        Some(Logic::start(&cfg, cluster, &endpoint, shutdown.clone()))
    } else {
        None
    };

    let comet_runtime = if cfg.has(Role::Comet) && (cfg.has(Role::Logic) || cfg.has(Role::Job)) {
        Some(comet_runtime().context("starting the comet's runtime")?)
    } else {
        None
    };
    let logic_client = Arc::new(LogicClient::new(endpoint.clone(), cfg.logic_addrs(), RPC_TIMEOUT));
    if cfg.has(Role::Comet) {
        let advertise = |given: &str, addr: std::net::SocketAddr| {
            if given.is_empty() {
                addr.to_string()
            } else {
                given.to_string()
            }
        };
        let comet_cfg = CometConfig {
            id: format!("comet-{}", cfg.quic_addr),
            tcp_addr: cfg.tcp_addr,
            ws_addr: cfg.ws_addr,
            wss: client_tls.clone().map(|tls| (cfg.wss_addr, tls)),
            advertise_tcp: advertise(&cfg.advertise_tcp, cfg.tcp_addr),
            advertise_ws: advertise(&cfg.advertise_ws, cfg.ws_addr),
            advertise_quic: cfg.quic_addr.to_string(),
            zone: cfg.zone.clone(),
            weight: cfg.weight,
            max_body: cfg.max_body,
            handshake_timeout: Duration::from_millis(cfg.handshake_timeout_ms),
            heartbeat: Duration::from_secs(cfg.heartbeat_secs),
            outbound_queue: cfg.outbound_queue,
            slow_consumer: if cfg.slow_consumer == "drop" { SlowConsumer::Drop } else { SlowConsumer::Close },
            renew_interval: Duration::from_millis(cfg.renew_interval_ms),
            buckets: 32,
            rpc_timeout: RPC_TIMEOUT,
            recover_max: cfg.recover_max,
            auth: client_auth,
            limits: client_limits(&cfg),
            listen_backlog: cfg.listen_backlog,
            max_out_frame: max_out_frame(&cfg),
        };
        let starting = comet::start(comet_cfg, endpoint.clone(), cfg.logic_addrs(), shutdown.clone());
        match &comet_runtime {
            Some(rt) => rt.spawn(starting).await.context("comet runtime")?,
            None => starting.await,
        }
        .context("starting comet")?;
    }
    let job = cfg.has(Role::Job).then(|| {
        let job_cfg = JobConfig {
            id: format!("job-{}", cfg.quic_addr),
            partition: 0,
            batch_records: cfg.job_batch_records,
            batch_bytes: cfg.job_batch_bytes,
            lease_ttl: Duration::from_millis(cfg.job_lease_ms),
        };
        job::start(job_cfg, logic_client.clone(), shutdown.clone())
    });

    let app = http::router(Health { roles: cfg.roles.clone(), logic: logic.clone() }, prometheus);
    let limits = http_limits(&cfg);
    let listener = listen::bind(cfg.http_addr, cfg.listen_backlog)
        .with_context(|| format!("binding HTTP {}", cfg.http_addr))?;
    info!(node = cfg.node_id, roles = %cfg.roles, http = %cfg.http_addr, tcp = %cfg.tcp_addr, ws = %cfg.ws_addr, quic = %cfg.quic_addr, "goim node started");
    let secure = match client_tls {
        Some(tls) => {
            let listener = listen::bind(cfg.https_addr, cfg.listen_backlog)
                .with_context(|| format!("binding HTTPS {}", cfg.https_addr))?;
            let serving =
                crate::http_server::serve(listener, app.clone(), limits, Some(tls), shutdown.clone());
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
fn comet_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().thread_name("goim-comet").enable_all().build()
}

/// The comet's client bounds from the settings (`--max-connections 0`: derived from the
/// open-file limit).
fn client_limits(cfg: &Config) -> ClientLimits {
    let max_connections = match cfg.max_connections {
        0 => listen::auto_max_connections(listen::open_files_limit(), cfg.http_max_connections),
        n => n,
    };
    ClientLimits {
        max_connections,
        max_per_ip: cfg.max_connections_per_ip,
        conn_rate: Rate::new(cfg.conn_rate_per_ip, cfg.conn_burst_per_ip),
        auth_rate: Rate::new(cfg.auth_rate_per_ip, cfg.auth_burst_per_ip),
        ws_ping_rate: Rate::per_sec(cfg.ws_ping_rate),
        uplink_rate: Rate::per_sec(cfg.uplink_rate),
        max_key_len: cfg.max_key_len,
        max_room_len: cfg.max_room_len,
    }
}

/// The largest frame a comet sends: a room batch of a job's push batch (at most
/// `job_batch_bytes` of bodies, or one push body beyond it, each with its packet header).
fn max_out_frame(cfg: &Config) -> usize {
    let header = goim_net::packet::HEADER_LEN;
    let bodies = cfg.job_batch_bytes.max(cfg.max_push_body).saturating_add(cfg.max_push_body);
    bodies.saturating_add(cfg.job_batch_records.saturating_add(1).saturating_mul(header))
}

/// The HTTP server's bounds; its connection cap is at most a quarter of the open-file limit.
fn http_limits(cfg: &Config) -> HttpLimits {
    let max_connections = listen::http_share(listen::open_files_limit(), cfg.http_max_connections);
    if max_connections < cfg.http_max_connections {
        tracing::warn!(
            configured = cfg.http_max_connections,
            max_connections,
            "HTTP connection cap lowered to a quarter of the open-file limit"
        );
    }
    HttpLimits {
        max_connections,
        header_timeout: Duration::from_millis(cfg.http_header_timeout_ms),
        body_timeout: Duration::from_millis(cfg.http_body_timeout_ms),
        idle_timeout: Duration::from_millis(cfg.http_idle_timeout_ms),
        max_body: cfg.max_push_body,
    }
}
