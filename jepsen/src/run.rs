//! One test, start to end: hosts up, cluster started, workload and nemeses for `--time`,
//! everything healed, a quiet period in which the cluster must converge, every replica's
//! push log read, the history checked, the report written, everything torn down.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::checker::{self, FinalState};
use crate::cluster::{self, Api, Topology};
use crate::firewall::Firewall;
use crate::history::{History, What};
use crate::hosts::Network;
use crate::nemesis::{self, Ctx, Kind};
use crate::procs::{Procs, Started};
use crate::workload::{ClientSpec, Workload};

/// Everything `goim-jepsen test` takes.
#[derive(Debug, Clone)]
pub struct Opts {
    pub time: Duration,
    pub nemesis: Vec<Kind>,
    pub interval: Duration,
    pub results: PathBuf,
    pub nodes: usize,
    pub comets: usize,
    pub jobs: usize,
    pub seed: u64,
    pub goim: PathBuf,
    pub unsafe_mode: bool,
    pub rate: f64,
    pub pushers: usize,
    pub rooms: usize,
    pub clients_per_room: usize,
    pub quiet: Duration,
    pub keep_data: bool,
}

/// Runs the test; `Ok(true)` when the history is valid.
pub async fn test(opts: Opts) -> anyhow::Result<bool> {
    std::fs::create_dir_all(&opts.results).with_context(|| format!("creating {}", opts.results.display()))?;
    let results = opts.results.canonicalize()?;
    if results.join("nodes").exists() {
        std::fs::remove_dir_all(results.join("nodes"))?;
    }
    Network::cleanup_stale();
    let mut names: Vec<String> = (1..=opts.nodes).map(|i| format!("n{i}")).collect();
    names.extend((1..=opts.comets).map(|i| format!("c{i}")));
    names.extend((1..=opts.jobs).map(|i| format!("j{i}")));
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let tag = format!("{}", std::process::id() % 100_000);
    let net = Arc::new(create_network(&tag, &name_refs)?);
    net.self_check().context("the hosts cannot reach each other")?;
    let procs = Arc::new(Procs::new()?);

    // Ctrl-C / SIGTERM: tear down and leave.
    let (n2, p2) = (net.clone(), procs.clone());
    tokio::spawn(async move {
        crate::signals().await;
        eprintln!("\ninterrupted: tearing down");
        p2.kill_all().await;
        n2.teardown();
        std::process::exit(130);
    });

    let outcome = run(&opts, results.clone(), net.clone(), procs.clone()).await;
    procs.kill_all().await;
    net.teardown();
    if outcome.is_ok() && !opts.keep_data {
        for h in &names {
            let _ = std::fs::remove_dir_all(results.join("nodes").join(h).join("data"));
        }
    }
    outcome
}

/// The hosts on the first free subnet 10.77.S.0/24 (S from 77 on), so runs in parallel
/// (tests) never share one.
fn create_network(tag: &str, names: &[&str]) -> anyhow::Result<Network> {
    let mut last = None;
    for subnet in 77..=250u8 {
        match Network::create(tag, subnet, names) {
            Ok(net) => return Ok(net),
            Err(e) if format!("{e:#}").contains("already in use") => last = Some(e),
            Err(e) => return Err(e.context("creating the network namespaces")),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no free subnet")).context("creating the network namespaces"))
}

async fn run(opts: &Opts, results: PathBuf, net: Arc<Network>, procs: Arc<Procs>) -> anyhow::Result<bool> {
    let history = History::create(&results.join("history.jsonl"))?;
    let mut topo =
        Topology::new(&net, opts.goim.clone(), results.clone(), opts.nodes, opts.comets, opts.jobs);
    if opts.unsafe_mode {
        topo.logic_flags.push("--unsafe-ack-before-commit".into());
    }
    let topo = Arc::new(topo);
    let fw = Arc::new(Firewall::new(&net)?);
    let api = Api::new(Duration::from_secs(2))?;
    history.log(What::Note {
        text: format!(
            "seed {} nemesis {:?} time {:?} nodes {} comets {} jobs {}{}",
            opts.seed,
            opts.nemesis.iter().map(|k| k.name()).collect::<Vec<_>>(),
            opts.time,
            opts.nodes,
            opts.comets,
            opts.jobs,
            if opts.unsafe_mode { " UNSAFE" } else { "" }
        ),
    });

    // Start logic first (they form the cluster), then comets and jobs.
    for host in topo.all() {
        std::fs::create_dir_all(results.join("nodes").join(&host))?;
        procs.add(topo.spec(&host))?;
    }
    for host in topo.all() {
        match procs.wait_started(&host, Duration::from_secs(60)).await {
            Started::Healthy => {}
            Started::Exited { code, tail } => bail!("{host} exited at start ({code:?}):\n{tail}"),
            Started::Pending => bail!("{host} not healthy after 60 s"),
        }
    }
    wait_comets_registered(&topo, Duration::from_secs(30)).await?;
    history.log(What::Note { text: "cluster up".into() });

    let rooms: Vec<String> = (1..=opts.rooms).map(|i| format!("live://{i}")).collect();
    let mut clients = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        for c in 0..opts.clients_per_room {
            let i = r * opts.clients_per_room + c;
            let comet = &topo.comets[i % topo.comets.len()];
            let ws = i % 2 == 1;
            clients.push(ClientSpec {
                name: format!("client-{i}"),
                mid: 1000 + i as i64,
                key: format!("key-{i}"),
                room: room.clone(),
                ws,
                first_comet: if ws { topo.ws(comet) } else { topo.tcp(comet) },
            });
        }
    }
    let logic_http: Vec<String> = topo.logic.iter().map(|h| topo.http(h)).collect();
    let workload = Arc::new(Workload::new(history.clone(), logic_http, rooms, clients));
    let ctx = Arc::new(Ctx::new(topo.clone(), procs.clone(), fw.clone(), api.clone(), history.clone()));

    // Clients first, so they are in their rooms before the first push.
    let stop_clients = Arc::new(AtomicBool::new(false));
    let receivers = tokio::spawn(workload.clone().receive(stop_clients.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let stop_leader = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_leader(ctx.clone(), stop_leader.clone()));
    let stop_push = Arc::new(AtomicBool::new(false));
    let pushers = tokio::spawn(workload.clone().push(opts.pushers, opts.rate, opts.seed, stop_push.clone()));
    let stop_nemesis = Arc::new(AtomicBool::new(false));
    let nemeses = tokio::spawn(nemesis::run(
        ctx.clone(),
        opts.nemesis.clone(),
        opts.interval,
        opts.seed,
        stop_nemesis.clone(),
    ));
    let stop_progress = Arc::new(AtomicBool::new(false));
    let progress = tokio::spawn(crate::progress::run(
        workload.counters.clone(),
        history.clone(),
        opts.time,
        stop_progress.clone(),
    ));

    tokio::time::sleep(opts.time).await;
    stop_nemesis.store(true, Ordering::Relaxed);
    let _ = nemeses.await;
    history.log(What::Note { text: "healing".into() });
    ctx.heal().await?;
    history.log(What::Note { text: "healed; pushes go on for a few seconds".into() });
    // A few more pushes on the healed cluster: every client must see them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_push.store(true, Ordering::Relaxed);
    let _ = pushers.await;
    history.log(What::Note { text: "quiet period".into() });
    let converged = converge(&api, &topo, &ctx, opts.quiet).await;
    history.log(What::Note { text: format!("converged: {converged}") });
    // Let clients drain what the job delivered last.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_clients.store(true, Ordering::Relaxed);
    let _ = receivers.await;
    stop_leader.store(true, Ordering::Relaxed);
    let _ = watcher.await;
    stop_progress.store(true, Ordering::Relaxed);
    let _ = progress.await;

    let state = final_state(&api, &topo).await;
    cluster::save_replicas(&results, &state)?;
    let events = history.snapshot();
    let summary = checker::check(&events, &state);
    crate::report::write(&results, &events, &summary)?;
    checker::print_verdict(&summary);
    Ok(summary.valid)
}

/// Every comet is listed by logic before clients look for one.
async fn wait_comets_registered(topo: &Topology, wait: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    let http = topo.http(&topo.logic[0]);
    loop {
        let listed = reqwest::get(format!("http://{http}/goim/nodes/instances"))
            .await
            .ok()
            .map(|r| r.json::<serde_json::Value>());
        let n = match listed {
            Some(f) => f.await.ok().and_then(|v| v["data"].as_array().map(Vec::len)).unwrap_or(0),
            None => 0,
        };
        if n >= topo.comets.len() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("only {n} of {} comets registered after {wait:?}", topo.comets.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Logs a `Leader` event whenever the majority's leader (or term) changes.
async fn watch_leader(ctx: Arc<Ctx>, stop: Arc<AtomicBool>) {
    let mut last: Option<(Option<String>, u64)> = None;
    while !stop.load(Ordering::Relaxed) {
        let now = ctx.leader().await;
        let seen = match &now {
            Some((h, t)) => (Some(h.clone()), *t),
            None => (None, last.as_ref().map(|l| l.1).unwrap_or(0)),
        };
        if last.as_ref() != Some(&seen) {
            ctx.history.log(What::Leader { node: seen.0.clone(), term: seen.1 });
            last = Some(seen);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The hosts that are voters now, by the leader's word.
async fn voter_hosts(api: &Api, topo: &Topology) -> Vec<String> {
    for h in &topo.logic {
        if let Ok(s) = api.status(&topo.http(h)).await {
            if s.leader.is_some() && !s.voters.is_empty() {
                return s.voters.iter().filter_map(|id| topo.host_of(*id)).collect();
            }
        }
    }
    topo.logic.clone()
}

/// Waits (up to `wait`) until every voter has applied the same push-log head and the job
/// offset has caught up with it.
async fn converge(api: &Api, topo: &Topology, ctx: &Ctx, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let voters = voter_hosts(api, topo).await;
        let mut heads = Vec::new();
        for h in &voters {
            match api.status(&topo.http(h)).await {
                Ok(s) => heads.push((s.push_log.last_seq, s.jobs.first().map(|j| j.offset))),
                Err(_) => heads.push((u64::MAX, None)),
            }
        }
        let agreed = !heads.is_empty()
            && heads.iter().all(|h| h.0 == heads[0].0 && h.0 != u64::MAX && h.1 == Some(h.0));
        if agreed {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            ctx.history.log(What::Note { text: format!("not converged: (last_seq, job offset) {heads:?}") });
            return false;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn final_state(api: &Api, topo: &Topology) -> FinalState {
    let mut replicas = Vec::new();
    for h in voter_hosts(api, topo).await {
        replicas.push(api.replica(&h, &topo.http(&h)).await);
    }
    FinalState { replicas }
}
