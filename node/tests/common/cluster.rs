//! Multi-process cluster harness for the tests that need separate nodes (`cluster_*.rs`,
//! `recovery.rs`, `damaged_data.rs`). Every node is its own `goim run` child process with its
//! own temp data dir and its own loopback address 127.0.0.N (Linux routes all of 127/8 to lo),
//! running the roles asked for: logic nodes form the Raft group from `--peers`, comet- and
//! job-only nodes reach them through `--logic`.
//!
//! What it offers: start L logic + M comet + J job processes and wait until the cluster is
//! ready; find the leader and the active job through `/cluster/status`; `kill -9` and restart
//! a node on the same addresses and data dir (waiting until a logic node caught up); push with
//! an `Idempotency-Key`, retried across logic nodes until acknowledged; goim clients whose
//! pushes are collected in the background (`Inbox`); checks of a room stream.
//!
//! Each child's stdout and stderr go to `node.log` in its temp dir, together with the
//! harness's own notes (start, kill), so a failure can be read as one story: when a test
//! panics, `Cluster`'s drop prints the tail of every node's log (`GOIM_TEST_LOG_LINES` lines,
//! default 60; `GOIM_TEST_LOG` sets the children's log filter; with `GOIM_TEST_KEEP` set the
//! temp dirs of a failed test are kept).
#![allow(dead_code)] // each test binary uses a different subset of the harness

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use goim_client::{AuthReply, AuthRequest, Client};
use goim_net::packet::Packet;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Faster cluster timings than the defaults, so expiry and takeover fit in a test.
pub const FAST_TIMINGS: [&str; 6] =
    ["--renew-interval-ms", "300", "--comet-ttl-ms", "1500", "--job-lease-ms", "1500"];

/// How long a (re)started process may take to answer `/health` with 200.
pub const START_WITHIN: Duration = Duration::from_secs(30);

/// Next loopback host number; each node of the test process gets its own 127.0.0.N.
static NEXT_HOST: AtomicU32 = AtomicU32::new(0);

fn next_ip() -> Ipv4Addr {
    let n = NEXT_HOST.fetch_add(1, Ordering::Relaxed);
    Ipv4Addr::new(127, 0, (n / 250) as u8, (2 + n % 250) as u8)
}

/// Cluster tests in one test binary run one at a time: each starts several processes on a
/// 2-core box, and timings (failover) are what they measure.
static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().await
}

/// Wall-clock time as the nodes' log lines print it (RFC 3339, UTC), for the harness notes.
pub fn utc_now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Logic,
    Comet,
    Job,
}

impl Role {
    fn flag(self) -> &'static str {
        match self {
            Role::Logic => "logic",
            Role::Comet => "comet",
            Role::Job => "job",
        }
    }
}

/// One `goim run` child process with fixed addresses and data dir across restarts: the one
/// process harness (a cluster's node here; `common::Node`, a one-node cluster, wraps it).
pub struct ProcNode {
    pub name: String,
    pub role: Role,
    pub id: u64,
    pub ip: Ipv4Addr,
    pub http: SocketAddr,
    pub tcp: SocketAddr,
    pub ws: SocketAddr,
    pub quic: SocketAddr,
    args: Vec<String>,
    /// A command the binary runs under (e.g. `prlimit --nofile=N:N --`), empty for none.
    launcher: Vec<String>,
    /// Holds the node's temp dir (data dir and log); None once kept for a post-mortem.
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    child: Option<Child>,
}

impl ProcNode {
    /// A node on a fresh loopback address with free ports there (not started).
    fn new(name: String, role: Role, id: u64) -> ProcNode {
        ProcNode::on(next_ip(), name, role, id)
    }

    /// A node with every role (a one-node cluster) on 127.0.0.1, run by `launcher` (a
    /// command taking the program and its arguments), with `extra` flags; not started.
    pub fn standalone(launcher: &[&str], extra: &[&str]) -> ProcNode {
        let mut node = ProcNode::on(Ipv4Addr::LOCALHOST, "node".into(), Role::Logic, 1);
        node.launcher = launcher.iter().map(|s| s.to_string()).collect();
        let mut args: Vec<String> =
            vec!["run".into(), "--data-dir".into(), node.data_dir().display().to_string()];
        args.extend(node.addr_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        node.args = args;
        node
    }

    fn on(ip: Ipv4Addr, name: String, role: Role, id: u64) -> ProcNode {
        // Hold every socket until all ports are picked so none is handed out twice.
        let tcp: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind((ip, 0)).expect("bind tcp")).collect();
        // The QUIC port number also carries the TCP liveness listener: pick one free on both.
        let (udp, _liveness) = loop {
            let udp = UdpSocket::bind((ip, 0)).expect("bind udp");
            let port = udp.local_addr().expect("udp addr").port();
            if let Ok(tcp) = TcpListener::bind((ip, port)) {
                break (udp, tcp);
            }
        };
        let port = |l: &TcpListener| l.local_addr().unwrap();
        let tmp = tempfile::tempdir().expect("temp dir");
        ProcNode {
            name,
            role,
            id,
            ip,
            http: port(&tcp[0]),
            tcp: port(&tcp[1]),
            ws: port(&tcp[2]),
            quic: udp.local_addr().unwrap(),
            args: Vec::new(),
            launcher: Vec::new(),
            dir: tmp.path().to_path_buf(),
            tmp: Some(tmp),
            child: None,
        }
    }

    fn set_args(&mut self, specific: Vec<String>, extra: &[&str]) {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--node-id".into(),
            self.id.to_string(),
            "--roles".into(),
            self.role.flag().into(),
            "--data-dir".into(),
            self.data_dir().display().to_string(),
        ];
        args.extend(self.addr_args());
        // `extra` may set one of the fast timings differently (a flag may be given once).
        for pair in FAST_TIMINGS.chunks(2) {
            if !extra.contains(&pair[0]) {
                args.extend(pair.iter().map(|s| s.to_string()));
            }
        }
        args.extend(specific);
        args.extend(extra.iter().map(|s| s.to_string()));
        self.args = args;
    }

    fn addr_args(&self) -> Vec<String> {
        let (http, tcp, ws, quic) = (self.http, self.tcp, self.ws, self.quic);
        [("--http-addr", http), ("--tcp-addr", tcp), ("--ws-addr", ws), ("--quic-addr", quic)]
            .into_iter()
            .flat_map(|(flag, addr)| [flag.to_string(), addr.to_string()])
            .collect()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn tcp_addr(&self) -> String {
        self.tcp.to_string()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/sub", self.ws)
    }

    pub fn quic_addr(&self) -> String {
        self.quic.to_string()
    }

    /// The id a comet registers under (see node.rs).
    pub fn comet_id(&self) -> String {
        format!("comet-{}", self.quic)
    }

    /// The id a job holds its lease under (see node.rs).
    pub fn job_id(&self) -> String {
        format!("job-{}", self.quic)
    }

    /// Keeps the temp dir (data and log) after the test.
    pub fn keep_dir(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = tmp.keep();
        }
    }

    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// A line in this node's log (and on the test's stderr), so harness actions and the
    /// node's own lines read as one story.
    pub fn note(&self, what: &str) {
        let line = format!("{} === harness: {} {what} ===", utc_now(), self.name);
        eprintln!("{line}");
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(self.log_path()) {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Starts the process; does not wait for it (a logic node is healthy only once a
    /// quorum is up).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = OpenOptions::new().create(true).append(true).open(self.log_path()).expect("open node.log");
        let filter = std::env::var("GOIM_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into());
        let goim = env!("CARGO_BIN_EXE_goim");
        let mut command = match self.launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(goim);
                c
            }
            None => Command::new(goim),
        };
        let child = command
            .args(&self.args)
            .env("GOIM_LOG", filter)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn goim");
        self.note(&format!("started pid {} at {} (quic {})", child.id(), self.http, self.quic));
        self.child = Some(child);
    }

    /// Panics (with the log tail) if the process has exited by itself.
    pub fn assert_alive(&mut self) {
        let name = self.name.clone();
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited unexpectedly ({status}); log tail:\n{}", self.log_tail(80));
            }
        }
    }

    pub async fn healthy(&self) -> bool {
        let client = short_client();
        matches!(client.get(format!("{}/health", self.url())).send().await, Ok(r) if r.status().is_success())
    }

    /// Waits for `/health` 200, failing fast if the process dies.
    pub async fn wait_healthy(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            self.assert_alive();
            if self.healthy().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not healthy within {within:?}; log tail:\n{}",
                self.name,
                self.log_tail(80)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit by itself (e.g. refusing to start); panics with the
    /// log tail if it still runs after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut().expect("started");
            if let Some(status) = child.try_wait().expect("wait for child") {
                self.child = None;
                self.note(&format!("exited by itself ({status})"));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {within:?}; log tail:\n{}",
                self.name,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Makes this stopped node a new, empty one under `id` on the same addresses (its data
    /// dir wiped, `--node-id id`): what an operator does for a voter whose data was lost.
    pub fn wipe_as(&mut self, id: u64) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let _ = std::fs::remove_dir_all(self.data_dir());
        let at = self.args.iter().position(|a| a == "--node-id").expect("a cluster node has --node-id");
        self.args[at + 1] = id.to_string();
        self.id = id;
        self.note(&format!("wiped, now node {id}"));
    }

    /// SIGKILL: the process gets no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.note("killed (-9)");
        }
    }

    /// SIGTERM and wait: the graceful path.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let status = child.wait().expect("wait for child");
        self.note(&format!("terminated ({status})"));
        status
    }

    /// The process id (a launcher execs the binary, so it is the binary's).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ProcNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn short_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .expect("http client")
}

/// Polls a push to `room` through `base` until one commits or `within` runs out: how long
/// it took.
pub async fn first_commit(base: &str, room: &str, within: Duration) -> Option<Duration> {
    let url = format!("{base}/goim/push/room?operation=1000&type=live&room={room}");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let started = Instant::now();
    while started.elapsed() < within {
        if let Ok(r) = client.post(&url).body("until one commits").send().await {
            if r.json::<Value>().await.is_ok_and(|v| v["code"] == 0) {
                return Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// GET returning the JSON reply, or None on any failure (nodes come and go in these tests).
pub async fn try_get(client: &reqwest::Client, url: &str) -> Option<Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

/// The `data` of a goim envelope with code 0.
pub fn data_of(reply: Option<Value>) -> Option<Value> {
    let reply = reply?;
    (reply["code"] == 0).then(|| reply["data"].clone())
}

/// The cluster's processes. Logic node `logic[i]` has Raft id `i + 1`.
pub struct Cluster {
    pub logic: Vec<ProcNode>,
    pub comets: Vec<ProcNode>,
    pub jobs: Vec<ProcNode>,
    pub http: reqwest::Client,
}

impl Cluster {
    /// `logic` voters, `comets` comet-only and `jobs` job-only processes, started and ready:
    /// every process healthy, every logic node lists every comet, a job holds the lease.
    pub async fn start(logic: usize, comets: usize, jobs: usize) -> Cluster {
        Cluster::start_with(logic, comets, jobs, &[]).await
    }

    /// As `start`, with more `goim run` flags for every process (overriding `FAST_TIMINGS`).
    pub async fn start_with(logic: usize, comets: usize, jobs: usize, extra: &[&str]) -> Cluster {
        Cluster::start_each(logic, comets, jobs, extra, |_| Vec::new()).await
    }

    /// As `start_with`, plus the flags `each(name)` returns for the process named `name`
    /// (`logic1`, `comet1`, `job1`, …), e.g. its own certificate.
    pub async fn start_each(
        logic: usize,
        comets: usize,
        jobs: usize,
        extra: &[&str],
        each: impl Fn(&str) -> Vec<String>,
    ) -> Cluster {
        let began = Instant::now();
        let mut c = Cluster {
            logic: (0..logic)
                .map(|i| ProcNode::new(format!("logic{}", i + 1), Role::Logic, i as u64 + 1))
                .collect(),
            comets: (0..comets)
                .map(|i| ProcNode::new(format!("comet{}", i + 1), Role::Comet, 100 + i as u64 + 1))
                .collect(),
            jobs: (0..jobs)
                .map(|i| ProcNode::new(format!("job{}", i + 1), Role::Job, 200 + i as u64 + 1))
                .collect(),
            http: short_client(),
        };
        let peers = c.peers();
        let logic_addrs = c.logic.iter().map(ProcNode::quic_addr).collect::<Vec<_>>().join(",");
        for n in &mut c.logic {
            let own = [vec!["--peers".into(), peers.clone()], each(&n.name)].concat();
            n.set_args(own, extra);
        }
        for n in c.comets.iter_mut().chain(c.jobs.iter_mut()) {
            let own = [vec!["--logic".into(), logic_addrs.clone()], each(&n.name)].concat();
            n.set_args(own, extra);
        }
        for n in &mut c.logic {
            n.spawn();
        }
        for n in &mut c.logic {
            n.wait_healthy(START_WITHIN).await;
        }
        for n in c.comets.iter_mut().chain(c.jobs.iter_mut()) {
            n.spawn();
        }
        for n in c.comets.iter_mut().chain(c.jobs.iter_mut()) {
            n.wait_healthy(START_WITHIN).await;
        }
        c.wait_ready(START_WITHIN).await;
        eprintln!(
            "{} === harness: cluster of {logic} logic + {comets} comet + {jobs} job processes ready in {:?} ===",
            utc_now(),
            began.elapsed()
        );
        c
    }

    /// `1=127.0.0.2:P,2=…`: the initial voters, as every logic node is given them.
    pub fn peers(&self) -> String {
        self.logic.iter().map(|n| format!("{}={}", n.id, n.quic)).collect::<Vec<_>>().join(",")
    }

    /// Every logic node lists every started comet, and (with jobs) a job holds the lease.
    pub async fn wait_ready(&self, within: Duration) {
        let comet_ids: Vec<String> =
            self.comets.iter().filter(|n| n.is_started()).map(ProcNode::comet_id).collect();
        let want_job = self.jobs.iter().any(ProcNode::is_started);
        wait_for(within, "cluster ready (comets listed everywhere, job lease held)", || async {
            for i in self.started_logic() {
                let listed = self.weighted_on(i).await?;
                let ids: Vec<&str> = listed.iter().filter_map(|c| c["id"].as_str()).collect();
                if !comet_ids.iter().all(|id| ids.contains(&id.as_str())) {
                    return None;
                }
            }
            if want_job && self.active_job().await.is_none() {
                return None;
            }
            Some(())
        })
        .await
    }

    pub fn started_logic(&self) -> Vec<usize> {
        (0..self.logic.len()).filter(|&i| self.logic[i].is_started()).collect()
    }

    /// HTTP bases of every logic node, dead or alive (pushers skip the dead ones).
    pub fn logic_urls(&self) -> Vec<String> {
        self.logic.iter().map(ProcNode::url).collect()
    }

    pub fn logic_index(&self, id: u64) -> Option<usize> {
        self.logic.iter().position(|n| n.id == id)
    }

    pub async fn get(&self, url: &str) -> Option<Value> {
        try_get(&self.http, url).await
    }

    /// `/cluster/status` data of logic node `i`.
    pub async fn status(&self, i: usize) -> Option<Value> {
        if !self.logic[i].is_started() {
            return None;
        }
        data_of(self.get(&format!("{}/cluster/status", self.logic[i].url())).await)
    }

    /// The leader's index in `logic`: the node in state Leader with the highest term, named
    /// leader at that term by a majority of the voters (itself included). A restarted former
    /// leader may claim leadership of its old term for a while; it is not counted.
    pub async fn leader(&self) -> Option<usize> {
        let mut statuses = Vec::new();
        for i in self.started_logic() {
            if let Some(s) = self.status(i).await {
                statuses.push((i, s));
            }
        }
        let (li, ls) = statuses
            .iter()
            .filter(|(_, s)| s["state"] == "Leader")
            .max_by_key(|(_, s)| s["term"].as_u64())?;
        let (id, term) = (self.logic[*li].id, &ls["term"]);
        let named = statuses.iter().filter(|(_, s)| s["leader"] == id && &s["term"] == term).count();
        (named * 2 > self.logic.len()).then_some(*li)
    }

    pub async fn wait_leader(&self, within: Duration) -> usize {
        wait_for(within, "a leader", || self.leader()).await
    }

    pub async fn applied_index(&self, i: usize) -> Option<u64> {
        self.status(i).await.and_then(|s| s["applied_index"].as_u64())
    }

    /// Waits until logic node `i` follows the leader and has applied everything the leader
    /// had applied when asked. The leader may change meanwhile (a node coming back stands for
    /// election when it does not hear from the leader soon enough on a busy box): then `i`
    /// follows the new one.
    pub async fn wait_caught_up(&self, i: usize, within: Duration) {
        let leader = self.wait_leader(within).await;
        let target = wait_for(within, "leader's applied index", || self.applied_index(leader)).await;
        let what = format!("{} to follow the leader and apply up to index {target}", self.logic[i].name);
        wait_for(within, &what, || async {
            let s = self.status(i).await?;
            let follows = self.leader().await.is_some_and(|l| s["leader"] == self.logic[l].id);
            (follows && s["applied_index"].as_u64()? >= target).then_some(())
        })
        .await
    }

    fn node_mut(&mut self, role: Role, i: usize) -> &mut ProcNode {
        match role {
            Role::Logic => &mut self.logic[i],
            Role::Comet => &mut self.comets[i],
            Role::Job => &mut self.jobs[i],
        }
    }

    pub fn kill9(&mut self, role: Role, i: usize) {
        self.node_mut(role, i).kill9();
    }

    /// Restarts a killed node on the same addresses and data dir; waits until it is
    /// healthy and, for a logic node, caught up with the leader.
    pub async fn restart(&mut self, role: Role, i: usize) {
        let node = self.node_mut(role, i);
        node.spawn();
        node.wait_healthy(START_WITHIN).await;
        if role == Role::Logic {
            self.wait_caught_up(i, START_WITHIN).await;
        }
    }

    /// Panics if any started process exited by itself.
    pub fn assert_all_alive(&mut self) {
        for n in self.logic.iter_mut().chain(self.comets.iter_mut()).chain(self.jobs.iter_mut()) {
            n.assert_alive();
        }
    }

    /// `data.addrs` of `/goim/nodes/weighted` on logic node `i`.
    pub async fn weighted_on(&self, i: usize) -> Option<Vec<Value>> {
        let d = data_of(self.get(&format!("{}/goim/nodes/weighted", self.logic[i].url())).await)?;
        d["addrs"].as_array().cloned()
    }

    /// `data.addrs` of `/goim/nodes/weighted` from the first logic node that answers.
    pub async fn weighted(&self) -> Option<Vec<Value>> {
        for i in self.started_logic() {
            if let Some(a) = self.weighted_on(i).await {
                return Some(a);
            }
        }
        None
    }

    /// The job lease holder of partition 0, per the leader.
    pub async fn lease_holder(&self) -> Option<String> {
        let leader = self.leader().await?;
        let s = self.status(leader).await?;
        s["jobs"][0]["lease_holder"].as_str().map(String::from)
    }

    /// Index in `jobs` of the job holding the lease.
    pub async fn active_job(&self) -> Option<usize> {
        let holder = self.lease_holder().await?;
        self.jobs.iter().position(|j| j.is_started() && j.job_id() == holder)
    }

    /// `/goim/online/room` count of `live://{room}` on logic node `i`.
    pub async fn online_room(&self, i: usize, room: &str) -> Option<u64> {
        let url = format!("{}/goim/online/room?type=live&rooms={room}", self.logic[i].url());
        data_of(self.get(&url).await)?[room].as_u64()
    }

    /// `/goim/online/total` (ip_count, conn_count) on logic node `i`.
    pub async fn online_total(&self, i: usize) -> Option<(u64, u64)> {
        let d = data_of(self.get(&format!("{}/goim/online/total", self.logic[i].url())).await)?;
        Some((d["ip_count"].as_u64()?, d["conn_count"].as_u64()?))
    }

    /// Prometheus text of `/metrics` on any node.
    pub async fn metrics(&self, node: &ProcNode) -> Option<String> {
        self.http.get(format!("{}/metrics", node.url())).send().await.ok()?.text().await.ok()
    }

    /// Prints every running logic node's `/cluster/status` (from a thread of its own: this
    /// runs in `drop`, maybe inside the test's runtime).
    pub fn dump_statuses(&self) {
        let urls: Vec<(String, String)> =
            self.logic.iter().filter(|n| n.is_started()).map(|n| (n.name.clone(), n.url())).collect();
        let printed = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let client = short_client();
                for (name, url) in urls {
                    let status = try_get(&client, &format!("{url}/cluster/status")).await;
                    eprintln!("\n----- {name} /cluster/status -----\n{}", status.unwrap_or_default());
                }
            });
            Some(())
        })
        .join();
        if printed.is_err() {
            eprintln!("(could not read /cluster/status)");
        }
    }

    pub fn dump_logs(&self, lines: usize) {
        for n in self.logic.iter().chain(&self.comets).chain(&self.jobs) {
            eprintln!(
                "\n----- {} ({}; {}) last {lines} lines -----\n{}",
                n.name,
                n.role.flag(),
                n.log_path().display(),
                n.log_tail(lines)
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let lines = std::env::var("GOIM_TEST_LOG_LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
            eprintln!("\n===== test failed: tail of every node's log =====");
            self.dump_logs(lines);
            self.dump_statuses();
            if std::env::var_os("GOIM_TEST_KEEP").is_some() {
                for n in self.logic.iter_mut().chain(self.comets.iter_mut()).chain(self.jobs.iter_mut()) {
                    n.keep_dir();
                }
                eprintln!("GOIM_TEST_KEEP: data dirs and logs kept (paths above)");
            }
        }
    }
}

/// Polls until Some; panics after `within` (a `Cluster` in scope prints its nodes' logs as
/// the panic unwinds).
pub use super::eventually as wait_for;

// ---------------------------------------------------------------------------------------
// Pushing with idempotent retries.

/// One push as the pusher saw it.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    pub key: String,
    pub body: String,
    /// When the first attempt was sent.
    pub sent_at: Instant,
    /// When an attempt returned code 0, and the reply's `data`.
    pub acked: Option<(Instant, Value)>,
    pub attempts: u32,
    pub last_error: String,
}

impl PushOutcome {
    pub fn room_seq(&self) -> Option<u64> {
        self.acked.as_ref().and_then(|(_, d)| d["room_seq"].as_u64())
    }

    pub fn acked_at(&self) -> Option<Instant> {
        self.acked.as_ref().map(|(t, _)| *t)
    }
}

/// Pushes to logic nodes over HTTP with an `Idempotency-Key`: a failed attempt (connection
/// error, timeout, a code other than 0 and -400) is retried with the same key on the next
/// logic node until one returns code 0 or `give_up` has passed.
#[derive(Clone)]
pub struct Pusher {
    http: reqwest::Client,
    bases: Arc<Vec<String>>,
    pub give_up: Duration,
}

/// One attempt's time limit: short, so a node stuck forwarding to a dead leader is left
/// for another rather than waited for.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// The op of a sentinel push: a barrier, not content, so the stream checks (which look at
/// one op) pass over it.
pub const SENTINEL_OP: i32 = 1999;

/// Instead of "wait a while, then check that nothing more came": a sentinel pushed after
/// everything else. A comet hands its clients the push log in log order, so once a client
/// has the sentinel it has everything pushed before it, the unwanted included.
impl Pusher {
    /// Pushes the room sentinel into `room` (as the push API names it, `type=live&room=1`);
    /// returns its body.
    pub async fn room_sentinel(&self, room: &str) -> String {
        let body = "sentinel".to_string();
        let path = format!("/goim/push/room?operation={SENTINEL_OP}&{room}");
        let out = self.push(0, &path, &format!("sentinel-{}", utc_now()), &body).await;
        assert!(out.acked.is_some(), "sentinel push not acknowledged: {}", out.last_error);
        body
    }
}

impl Pusher {
    pub fn new(bases: Vec<String>) -> Pusher {
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(Duration::from_millis(300))
            .build()
            .expect("http client");
        Pusher { http, bases: Arc::new(bases), give_up: Duration::from_secs(20) }
    }

    /// `path` like `/goim/push/room?operation=1000&type=live&room=1`; the first attempt
    /// goes to logic node `first`.
    pub async fn push(&self, first: usize, path: &str, key: &str, body: &str) -> PushOutcome {
        let sent_at = Instant::now();
        let mut out = PushOutcome {
            key: key.into(),
            body: body.into(),
            sent_at,
            acked: None,
            attempts: 0,
            last_error: String::new(),
        };
        let mut node = first;
        let mut backoff = Duration::from_millis(20);
        loop {
            out.attempts += 1;
            let url = format!("{}{path}", self.bases[node % self.bases.len()]);
            let attempt = self.http.post(&url).header("Idempotency-Key", key).body(body.to_string()).send();
            let reply: Result<Value, String> = match attempt.await {
                Ok(r) => r.json::<Value>().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match reply {
                Ok(v) if v["code"] == 0 => {
                    out.acked = Some((Instant::now(), v["data"].clone()));
                    return out;
                }
                Ok(v) if v["code"] == -400 => {
                    out.last_error = format!("{url}: refused: {v}");
                    return out;
                }
                Ok(v) => out.last_error = format!("{url}: {v}"),
                Err(e) => out.last_error = format!("{url}: {e}"),
            }
            if sent_at.elapsed() >= self.give_up {
                return out;
            }
            node += 1;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }
}

/// Several pushers sending a steady stream of room pushes, each with a unique body (= its
/// idempotency key): every `interval` each pusher starts one push (with its retries) without
/// waiting for the previous one, so pushes keep being sent while earlier ones retry; at most
/// `WINDOW` per pusher are in flight, so an outage does not become a storm of retries.
pub struct PushStream {
    stop: CancellationToken,
    pushers: Vec<JoinHandle<()>>,
    outcomes: Arc<Mutex<Vec<PushOutcome>>>,
}

/// Pushes in flight per pusher, at most.
pub const WINDOW: usize = 8;

impl PushStream {
    /// Pusher `p` sends to logic node `p` first (then rotates on failure); bodies are
    /// `{prefix}-p{p}-{n}`.
    pub fn start(
        pusher: &Pusher,
        pushers: usize,
        interval: Duration,
        path: &str,
        prefix: &str,
    ) -> PushStream {
        let stop = CancellationToken::new();
        let outcomes: Arc<Mutex<Vec<PushOutcome>>> = Arc::default();
        let handles = (0..pushers)
            .map(|p| {
                let (pusher, stop, outcomes) = (pusher.clone(), stop.clone(), outcomes.clone());
                let (path, prefix) = (path.to_string(), prefix.to_string());
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut inflight = tokio::task::JoinSet::new();
                    let mut n = 0u64;
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tick.tick() => {}
                        }
                        while let Some(r) = inflight.try_join_next() {
                            r.expect("push task");
                        }
                        if inflight.len() >= WINDOW {
                            continue;
                        }
                        let (pusher, outcomes, path) = (pusher.clone(), outcomes.clone(), path.clone());
                        let body = format!("{prefix}-p{p}-{n}");
                        n += 1;
                        inflight.spawn(async move {
                            let out = pusher.push(p, &path, &body, &body).await;
                            outcomes.lock().unwrap().push(out);
                        });
                    }
                    while let Some(r) = inflight.join_next().await {
                        r.expect("push task");
                    }
                })
            })
            .collect();
        PushStream { stop, pushers: handles, outcomes }
    }

    /// Outcomes of the pushes finished so far.
    pub fn finished(&self) -> Vec<PushOutcome> {
        self.outcomes.lock().unwrap().clone()
    }

    pub fn acked_count(&self) -> usize {
        self.outcomes.lock().unwrap().iter().filter(|o| o.acked.is_some()).count()
    }

    /// The earliest ack of a push first sent at or after `t`.
    pub fn first_ack_of_push_sent_after(&self, t: Instant) -> Option<Instant> {
        self.outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.sent_at >= t)
            .filter_map(PushOutcome::acked_at)
            .min()
    }

    /// Stops sending, waits for the pushes in flight (bounded by the pusher's `give_up`),
    /// returns every outcome.
    pub async fn stop(self) -> Vec<PushOutcome> {
        self.stop.cancel();
        for h in self.pushers {
            h.await.expect("pusher task");
        }
        let out = self.outcomes.lock().unwrap().clone();
        out
    }
}

// ---------------------------------------------------------------------------------------
// goim clients.

/// Connects to comet `node` over TCP or WebSocket and authenticates.
pub async fn join(node: &ProcNode, ws: bool, req: &AuthRequest) -> (Client, AuthReply) {
    let mut c = if ws {
        Client::connect_ws(&node.ws_url()).await.unwrap_or_else(|e| panic!("ws connect {}: {e}", node.name))
    } else {
        Client::connect_tcp(&node.tcp_addr())
            .await
            .unwrap_or_else(|e| panic!("tcp connect {}: {e}", node.name))
    };
    let reply = c.auth(req).await.unwrap_or_else(|e| panic!("auth on {}: {e}", node.name));
    (c, reply)
}

pub fn auth_req(mid: i64, key: &str, room: &str, accepts: &[i32]) -> AuthRequest {
    AuthRequest {
        mid,
        key: key.into(),
        room_id: room.into(),
        platform: "test".into(),
        accepts: accepts.to_vec(),
        ..Default::default()
    }
}

/// A client whose incoming application packets (op-9 batches flattened) are collected by a
/// background task until `stop`, which hands the client back.
pub struct Inbox {
    pub name: String,
    packets: Arc<Mutex<Vec<Packet>>>,
    ended: Arc<Mutex<Option<String>>>,
    stop: CancellationToken,
    task: JoinHandle<Client>,
}

impl Inbox {
    pub fn spawn(name: impl Into<String>, mut client: Client) -> Inbox {
        let packets: Arc<Mutex<Vec<Packet>>> = Arc::default();
        let ended: Arc<Mutex<Option<String>>> = Arc::default();
        let stop = CancellationToken::new();
        let task = {
            let (packets, ended, stop) = (packets.clone(), ended.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => break,
                        next = client.recv() => next,
                    };
                    match next {
                        Ok(Some(p)) => packets.lock().unwrap().push(p),
                        Ok(None) => {
                            *ended.lock().unwrap() = Some("closed by the server".into());
                            break;
                        }
                        Err(e) => {
                            *ended.lock().unwrap() = Some(e.to_string());
                            break;
                        }
                    }
                }
                client
            })
        };
        Inbox { name: name.into(), packets, ended, stop, task }
    }

    pub fn packets(&self) -> Vec<Packet> {
        self.packets.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.packets.lock().unwrap().len()
    }

    /// Waits until a packet with `body` (a sentinel) has arrived.
    pub async fn wait_body(&self, body: &str, within: Duration) {
        wait_for(within, &format!("{} to receive {body:?}", self.name), || async {
            self.bodies().iter().any(|b| b == body).then_some(())
        })
        .await
    }

    /// Why the connection ended, if it did.
    pub fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap().clone()
    }

    /// Bodies received so far (lossy UTF-8).
    pub fn bodies(&self) -> Vec<String> {
        self.packets.lock().unwrap().iter().map(|p| String::from_utf8_lossy(&p.body).into_owned()).collect()
    }

    /// Stops collecting; returns the client and everything received.
    pub async fn stop(self) -> (Client, Vec<Packet>) {
        self.stop.cancel();
        let client = self.task.await.expect("inbox task");
        let packets = self.packets.lock().unwrap().clone();
        (client, packets)
    }
}

/// What one client's room stream (packets of `op`) looks like: body → room_seq, and every
/// violation found: a body received twice, a header seq (= room_seq) that is not the
/// previous one +1 (a gap or a step back).
pub struct RoomCheck {
    pub received: HashMap<String, u64>,
    pub problems: Vec<String>,
}

pub fn room_check(who: &str, packets: &[Packet], op: i32) -> RoomCheck {
    let mut received: HashMap<String, u64> = HashMap::new();
    let mut problems = Vec::new();
    let mut prev: Option<u64> = None;
    for p in packets.iter().filter(|p| p.op == op) {
        let body = String::from_utf8_lossy(&p.body).into_owned();
        let seq = p.seq as u32 as u64;
        if let Some(first) = received.insert(body.clone(), seq) {
            problems.push(format!("{who}: {body:?} delivered twice (room_seq {first} and {seq})"));
        }
        if let Some(prev) = prev.filter(|&prev| seq != prev + 1) {
            problems.push(format!("{who}: room_seq {prev} then {seq} ({body:?}): not +1"));
        }
        prev = Some(seq);
    }
    RoomCheck { received, problems }
}

/// `room_check`, panicking on any violation. Returns body → room_seq.
pub fn check_room_stream(who: &str, packets: &[Packet], op: i32) -> HashMap<String, u64> {
    let check = room_check(who, packets, op);
    assert!(check.problems.is_empty(), "{}", check.problems.join("\n"));
    check.received
}

/// Acknowledged pushes of `acked` not among `received` (body → room_seq), and those received
/// with another room_seq than their reply named.
pub fn acked_problems(
    who: &str,
    received: &HashMap<String, u64>,
    acked: &[PushOutcome],
) -> (Vec<String>, Vec<String>) {
    let (mut missing, mut wrong) = (Vec::new(), Vec::new());
    for o in acked.iter().filter(|o| o.acked.is_some()) {
        match (received.get(&o.body), o.room_seq()) {
            (None, _) => missing.push(o.body.clone()),
            (Some(got), Some(want)) if *got != want => {
                wrong.push(format!("{who}: {:?} delivered as room_seq {got}, acknowledged as {want}", o.body))
            }
            _ => {}
        }
    }
    (missing, wrong)
}

/// Median and max of durations, in ms.
pub fn median_max_ms(samples: &[Duration]) -> (u128, u128) {
    let mut ms: Vec<u128> = samples.iter().map(Duration::as_millis).collect();
    ms.sort_unstable();
    let median = if ms.is_empty() {
        0
    } else if ms.len() % 2 == 1 {
        ms[ms.len() / 2]
    } else {
        (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2
    };
    (median, ms.last().copied().unwrap_or(0))
}

// ---------------------------------------------------------------------------------------
// Growing the group (membership tests).

impl Cluster {
    /// A room push (to room `live://1`) commits through logic `node` and reaches `client`.
    pub async fn push_delivered(&self, node: usize, client: &mut Client, body: &str) {
        let url = format!("{}/goim/push/room?operation=1000&type=live&room=1", self.logic[node].url());
        let reply = self.http.post(&url).body(body.to_string()).send().await.expect("push").json().await.ok();
        assert!(data_of(reply.clone()).is_some(), "push through logic{}: {reply:?}", node + 1);
        let p = client.recv_timeout(Duration::from_secs(10)).await;
        assert!(matches!(&p, Ok(Some(p)) if p.body == body.as_bytes()), "{body} delivered, got {p:?}");
    }
}

impl Cluster {
    /// Starts logic node `id` on a fresh address, outside the initial voters: it waits to
    /// be added (`goim cluster add`). Returns its index in `logic`.
    pub fn spawn_joining_logic(&mut self, id: u64, extra: &[&str]) -> usize {
        let mut n = ProcNode::new(format!("logic{id}"), Role::Logic, id);
        n.set_args(vec!["--peers".into(), self.peers()], extra);
        n.spawn();
        self.logic.push(n);
        self.logic.len() - 1
    }

    /// Runs `goim cluster <args…> --http <logic node i>` and returns its JSON output.
    pub fn cluster_cli(&self, i: usize, args: &[&str]) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_goim"))
            .arg("cluster")
            .args(args)
            .args(["--http", &self.logic[i].http.to_string()])
            .output()
            .expect("run goim cluster");
        assert!(out.status.success(), "goim cluster {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON from goim cluster")
    }
}

impl Cluster {
    /// `logic` voters configured (same `--peers`) but none started: tests start them in
    /// the order they choose.
    pub fn unstarted(logic: usize) -> Cluster {
        let mut c = Cluster {
            logic: (0..logic)
                .map(|i| ProcNode::new(format!("logic{}", i + 1), Role::Logic, i as u64 + 1))
                .collect(),
            comets: Vec::new(),
            jobs: Vec::new(),
            http: short_client(),
        };
        let peers = c.peers();
        for n in &mut c.logic {
            n.set_args(vec!["--peers".into(), peers.clone()], &[]);
        }
        c
    }
}
