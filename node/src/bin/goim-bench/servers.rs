//! The servers a run measures, started by the bench itself so one command is a fair
//! comparison and knows every server PID (CPU and memory come from /proc): goim as one
//! node with every role, or one logic+job process and K comet-only processes
//! (`--comets K`); nats-server (installed with apt-get when missing and root). Each gets
//! free loopback ports and a temporary directory; dropping a `Running` kills it and
//! removes the directory (kept when GOIM_BENCH_KEEP is set). An already running goim can be targeted instead (`--goim-http`).
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::http1;
use crate::jetstream;
use crate::procfs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Goim,
    Nats,
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            System::Goim => "goim",
            System::Nats => "nats",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Ws,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "TCP",
            Transport::Ws => "WebSocket",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    None,
    Nats,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// The goim binary to start (default: `goim` next to this executable).
    #[arg(long)]
    pub goim_bin: Option<PathBuf>,
    /// Run goim as one logic+job process and this many comet-only processes (0: one node
    /// with every role). Subscribers spread over the comets.
    #[arg(long, default_value_t = 0)]
    pub comets: usize,
    /// Logic voters (Raft replicas, every write fsync'd on a majority before its ack). With
    /// more than one and `--comets 0`, each voter is a whole node (logic and comet, the
    /// first also the job) and subscribers spread over them; pushes go to the leader.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=7))]
    pub voters: u64,
    /// One more flag for every goim process started (repeat for more), e.g. `--goim-arg=--outbound-queue=4096`.
    #[arg(long = "goim-arg", allow_hyphen_values = true)]
    pub goim_args: Vec<String>,
    /// Measure an already running goim instead: the HTTP address of a logic node …
    #[arg(long, requires_all = ["goim_sub", "server_pid"])]
    pub goim_http: Option<SocketAddr>,
    /// … its comets' client addresses (TCP or WebSocket, as `--transport`), comma-separated …
    #[arg(long, value_delimiter = ',')]
    pub goim_sub: Vec<SocketAddr>,
    /// … and the PIDs of its processes (CPU and memory are read from /proc).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// The nats-server binary (found on PATH or in /usr/sbin when not a path).
    #[arg(long, default_value = "nats-server")]
    pub nats_bin: String,
}

impl Peer {
    /// The systems a run measures, goim first.
    pub fn systems(self) -> Vec<System> {
        match self {
            Peer::None => vec![System::Goim],
            Peer::Nats => vec![System::Goim, System::Nats],
        }
    }
}

/// A server under test.
pub struct Running {
    pub system: System,
    /// What it is, for the report.
    pub label: String,
    /// goim: a logic node's HTTP API (pushes go there). NATS: the server (publisher too).
    pub publish_addr: SocketAddr,
    /// Where subscribers connect, spread round robin.
    pub sub_addrs: Vec<SocketAddr>,
    pub pids: Vec<u32>,
    /// goim: every process's HTTP API, in start order (node `i + 1` is `http[i]`).
    pub http: Vec<SocketAddr>,
    children: Vec<Child>,
    /// How each child was started (program, arguments, log), to start it again.
    specs: Vec<(PathBuf, Vec<String>, PathBuf)>,
    dir: Option<PathBuf>,
}

impl Running {
    /// Nothing started yet; `dir` (removed on drop) holds what will be.
    fn new(system: System, publish_addr: SocketAddr, dir: Option<PathBuf>) -> Running {
        Running {
            system,
            label: String::new(),
            publish_addr,
            sub_addrs: Vec::new(),
            pids: Vec::new(),
            http: Vec::new(),
            children: Vec::new(),
            specs: Vec::new(),
            dir,
        }
    }

    /// Starts `program` with its output in `log`, remembered so `restart` can repeat it.
    fn start_child(&mut self, program: &Path, args: Vec<String>, log: PathBuf) -> anyhow::Result<()> {
        let child = spawn(program, &args, &log)?;
        self.pids.push(child.id());
        self.children.push(child);
        self.specs.push((program.to_path_buf(), args, log));
        Ok(())
    }

    /// `kill -9` of process `i` (start order), waited for.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let child = self.children.get_mut(i).context("no such process")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Starts process `i` again as it was started first (its log continues).
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let (program, args, log) = self.specs.get(i).context("no such process")?;
        let child = spawn(program, args, log)?;
        self.pids[i] = child.id();
        self.children[i] = child;
        Ok(())
    }

    /// Bytes in the servers' directories (data and logs); 0 for a server not started here.
    pub fn disk_bytes(&self) -> u64 {
        fn walk(dir: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        self.dir.as_deref().map_or(0, walk)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir {
            if std::env::var_os("GOIM_BENCH_KEEP").is_some() {
                eprintln!("kept the servers' data and logs (GOIM_BENCH_KEEP): {}", dir.display());
            } else {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// How long a server may take to answer after start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Descriptors a goim process keeps beside its client connections (HTTP, QUIC, sled, logs).
const GOIM_FD_RESERVE: u64 = 500;

/// Free loopback ports, each held (bound) until the picker is dropped so that no two
/// picks are the same port; drop it just before starting the servers.
#[derive(Default)]
struct Ports {
    tcp: Vec<TcpListener>,
    udp: Vec<UdpSocket>,
}

impl Ports {
    fn tcp(&mut self) -> anyhow::Result<SocketAddr> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let addr = l.local_addr()?;
        self.tcp.push(l);
        Ok(addr)
    }

    /// A UDP port whose TCP twin is free too (a logic node's QUIC port number also
    /// carries its TCP liveness listener).
    fn udp(&mut self) -> anyhow::Result<SocketAddr> {
        loop {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            let addr = s.local_addr()?;
            if let Ok(twin) = TcpListener::bind(addr) {
                self.udp.push(s);
                self.tcp.push(twin);
                return Ok(addr);
            }
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn temp_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("goim-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Starts `program` with its output in `log`.
fn spawn(program: &Path, args: &[String], log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))
}

/// The last lines of a log, for an error message.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

impl ServerArgs {
    /// Starts (or, with `--goim-http`, describes) the system under test.
    pub async fn start(&self, system: System, transport: Transport) -> anyhow::Result<Running> {
        match system {
            System::Goim if self.goim_http.is_some() => Ok(self.external_goim()),
            System::Goim => self.start_goim(transport).await,
            System::Nats => self.start_nats().await,
        }
    }

    fn external_goim(&self) -> Running {
        let mut running = Running::new(System::Goim, self.goim_http.unwrap_or_else(|| loopback(3111)), None);
        running.label = format!("goim (running, pids {:?})", self.server_pid);
        running.sub_addrs = self.goim_sub.clone();
        running.pids = self.server_pid.clone();
        running
    }

    /// Starts (or, with `--goim-http`, describes) the system a push run measures: goim's
    /// logic voters alone (no comet, no job), or a 3-node JetStream cluster.
    pub async fn start_for_pushes(&self, system: System) -> anyhow::Result<Running> {
        match system {
            System::Goim if self.goim_http.is_some() => Ok(self.external_goim()),
            System::Goim => {
                let voters = usize::try_from(self.voters).unwrap_or(1);
                self.launch_goim(vec!["logic"; voters], Transport::Tcp).await
            }
            System::Nats => self.start_jetstream().await,
        }
    }

    async fn start_goim(&self, transport: Transport) -> anyhow::Result<Running> {
        let voters = usize::try_from(self.voters).unwrap_or(1);
        let whole = self.comets == 0;
        let roles: Vec<&str> = (0..voters)
            .map(|i| match (i == 0, whole) {
                (true, true) => "logic,job,comet",
                (true, false) => "logic,job",
                (false, true) => "logic,comet",
                (false, false) => "logic",
            })
            .chain(std::iter::repeat_n("comet", self.comets))
            .collect();
        self.launch_goim(roles, transport).await
    }

    /// Starts one goim process per role list in `roles`; the first `--voters` are the
    /// Raft voters, the rest join them as comets.
    async fn launch_goim(&self, roles: Vec<&str>, transport: Transport) -> anyhow::Result<Running> {
        let bin = match &self.goim_bin {
            Some(bin) => bin.clone(),
            None => std::env::current_exe()?.with_file_name("goim"),
        };
        anyhow::ensure!(bin.exists(), "no goim binary at {} (build it, or pass --goim-bin)", bin.display());
        let dir = temp_dir("goim")?;
        // The derived default leaves room for 1,024 HTTP connections; a bench needs 8.
        let max_connections =
            procfs::open_files_limit().unwrap_or(20_000).saturating_sub(GOIM_FD_RESERVE).max(1_000);
        let mut running = Running::new(System::Goim, loopback(0), Some(dir.clone()));
        let voters = usize::try_from(self.voters).unwrap_or(1).min(roles.len());
        let mut ports = Ports::default();
        let mut addrs = Vec::new();
        for _ in &roles {
            addrs.push((ports.tcp()?, ports.tcp()?, ports.tcp()?, ports.udp()?));
        }
        drop(ports);
        let logic_quic: Vec<String> = addrs[..voters].iter().map(|a| a.3.to_string()).collect();
        let peers: Vec<String> =
            logic_quic.iter().enumerate().map(|(i, q)| format!("{}={q}", i + 1)).collect();
        let mut healths = Vec::new();
        for (i, (role, (http, tcp, ws, quic))) in roles.iter().zip(addrs).enumerate() {
            let data = dir.join(format!("n{i}"));
            let mut args: Vec<String> = vec!["run".into(), "--roles".into(), role.to_string()];
            for (flag, value) in [
                ("--data-dir", data.display().to_string()),
                ("--http-addr", http.to_string()),
                ("--tcp-addr", tcp.to_string()),
                ("--ws-addr", ws.to_string()),
                ("--quic-addr", quic.to_string()),
                ("--max-connections", max_connections.to_string()),
                ("--max-connections-per-ip", "0".into()),
                ("--conn-rate-per-ip", "0".into()),
                ("--auth-rate-per-ip", "0".into()),
            ] {
                args.extend([flag.to_string(), value]);
            }
            if voters > 1 && i < voters {
                args.extend(["--node-id".into(), (i + 1).to_string(), "--peers".into(), peers.join(",")]);
            } else if i > 0 {
                args.extend([
                    "--node-id".into(),
                    (i + 1).to_string(),
                    "--logic".into(),
                    logic_quic.join(","),
                ]);
            }
            args.extend(self.goim_args.iter().cloned());
            let log = dir.join(format!("n{i}.log"));
            running.start_child(&bin, args, log.clone())?;
            running.http.push(http);
            if i == 0 {
                running.publish_addr = http;
            }
            if role.contains("comet") {
                running.sub_addrs.push(if transport == Transport::Tcp { tcp } else { ws });
            }
            healths.push((http, log));
        }
        for (http, log) in &healths {
            wait_healthy(*http, log).await?;
        }
        if voters > 1 {
            let voter_http: Vec<SocketAddr> = healths[..voters].iter().map(|(http, _)| *http).collect();
            running.publish_addr = wait_leader(&voter_http).await?;
        }
        let comets = roles.iter().filter(|r| r.contains("comet")).count();
        let comet_only = roles.len() - voters;
        if comets > 1 || comet_only > 0 {
            wait_comets(running.publish_addr, comets).await?;
        }
        running.label = match (voters, comet_only) {
            (v, 0) if comets == 0 => format!("goim ({v} logic voters)"),
            (1, 0) => "goim (1 node, every role)".to_string(),
            (v, 0) => format!("goim ({v} whole nodes, Raft)"),
            (1, k) => format!("goim (1 logic+job, {k} comets)"),
            (v, k) => format!("goim ({v} logic voters, {k} comets)"),
        };
        Ok(running)
    }

    async fn start_nats(&self) -> anyhow::Result<Running> {
        let bin = find_or_install_nats(&self.nats_bin)?;
        let dir = temp_dir("nats")?;
        let conf = dir.join("nats.conf");
        // The default cap (64k clients) would refuse a 100k-subscriber run.
        std::fs::write(&conf, "max_connections: 1000000\n")?;
        let addr = Ports::default().tcp()?;
        let args: Vec<String> = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            addr.port().to_string(),
            "-c".into(),
            conf.display().to_string(),
        ];
        let log = dir.join("nats.log");
        let mut running = Running::new(System::Nats, addr, Some(dir));
        running.start_child(&bin, args, log.clone())?;
        running.label = nats_version(&bin);
        running.sub_addrs = vec![addr];
        wait_nats(addr, &log).await?;
        Ok(running)
    }

    /// Three nats-server processes clustered with JetStream, and the file-stored stream
    /// replicated on all three (`jetstream::STREAM`) that a push run publishes to.
    async fn start_jetstream(&self) -> anyhow::Result<Running> {
        const NODES: usize = 3;
        let bin = find_or_install_nats(&self.nats_bin)?;
        let dir = temp_dir("jetstream")?;
        let mut ports = Ports::default();
        let mut addrs = Vec::new();
        for _ in 0..NODES {
            addrs.push((ports.tcp()?, ports.tcp()?));
        }
        drop(ports);
        let mut running = Running::new(System::Nats, addrs[0].0, Some(dir.clone()));
        running.sub_addrs = addrs.iter().map(|a| a.0).collect();
        for (i, (client, route)) in addrs.iter().enumerate() {
            let routes: Vec<String> =
                addrs.iter().filter(|a| a.1 != *route).map(|a| format!("\"nats://{}\"", a.1)).collect();
            let store = dir.join(format!("n{i}"));
            let conf = format!(
                "server_name: n{i}\nlisten: \"{client}\"\nmax_connections: 1000000\n\
                 jetstream {{ store_dir: \"{}\" }}\n\
                 cluster {{ name: bench, listen: \"{route}\", routes: [{}] }}\n",
                store.display(),
                routes.join(", ")
            );
            let conf_path = dir.join(format!("n{i}.conf"));
            std::fs::write(&conf_path, conf)?;
            running.start_child(
                &bin,
                vec!["-c".into(), conf_path.display().to_string()],
                dir.join(format!("n{i}.log")),
            )?;
        }
        for (i, (client, _)) in addrs.iter().enumerate() {
            wait_nats(*client, &dir.join(format!("n{i}.log"))).await?;
        }
        let created = poll(Duration::from_millis(500), || async {
            jetstream::create_stream(addrs[0].0, NODES).await.ok()
        });
        created.await.with_context(|| {
            format!(
                "JetStream did not create the R{NODES} stream within {START_TIMEOUT:?}; n0's log ends:\n{}",
                log_tail(&dir.join("n0.log"))
            )
        })?;
        running.label = format!("{} JetStream R{NODES} (file)", nats_version(&bin));
        Ok(running)
    }
}

/// What `nats-server --version` says, or its name.
fn nats_version(bin: &Path) -> String {
    match Command::new(bin).arg("--version").output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Err(_) => "nats-server".into(),
    }
}

/// Tries `attempt` every `every` until it gives a value; `None` after `START_TIMEOUT`.
async fn poll<T, F: std::future::Future<Output = Option<T>>>(
    every: Duration,
    mut attempt: impl FnMut() -> F,
) -> Option<T> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(value) = attempt().await {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// The JSON body of a 200 answer to `GET path`.
async fn get_json(http: SocketAddr, path: &str) -> Option<serde_json::Value> {
    match http1::get(http, path).await {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

async fn wait_healthy(http: SocketAddr, log: &Path) -> anyhow::Result<()> {
    let healthy = poll(Duration::from_millis(100), || async {
        matches!(http1::get(http, "/health").await, Ok((200, _))).then_some(())
    });
    healthy.await.with_context(|| {
        format!("goim on {http} not healthy within {START_TIMEOUT:?}; its log ends:\n{}", log_tail(log))
    })
}

/// Waits until the logic node lists `comets` live comets (pushes reach registered comets only).
async fn wait_comets(http: SocketAddr, comets: usize) -> anyhow::Result<()> {
    let listed = || async {
        let v = get_json(http, "/goim/nodes/instances").await?;
        (v["data"].as_array()?.len() >= comets).then_some(())
    };
    poll(Duration::from_millis(200), listed)
        .await
        .with_context(|| format!("the logic node does not list {comets} comets after {START_TIMEOUT:?}"))
}

/// Waits until the voters agree on a leader; returns its HTTP address (pushes go there,
/// not through a forwarding follower). `voters[i]` is node `i + 1`.
async fn wait_leader(voters: &[SocketAddr]) -> anyhow::Result<SocketAddr> {
    let leader = || async {
        let status = get_json(*voters.first()?, "/cluster/status").await?;
        let id = usize::try_from(status["data"]["leader"].as_u64()?).ok()?;
        voters.get(id.checked_sub(1)?).copied()
    };
    poll(Duration::from_millis(200), leader)
        .await
        .with_context(|| format!("no Raft leader among {} voters after {START_TIMEOUT:?}", voters.len()))
}

/// Waits until nats-server greets a client with its INFO line.
async fn wait_nats(addr: SocketAddr, log: &Path) -> anyhow::Result<()> {
    let greets = || async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut greeting = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut greeting)).await.ok()?.ok()?;
        (&greeting == b"INFO").then_some(())
    };
    poll(Duration::from_millis(100), greets).await.with_context(|| {
        format!(
            "nats-server on {addr} did not answer within {START_TIMEOUT:?}; its log ends:\n{}",
            log_tail(log)
        )
    })
}

/// The nats-server binary: `name` if it is a path, else found on PATH or in the sbin
/// directories; installed with apt-get (Debian's package) when missing and root.
fn find_or_install_nats(name: &str) -> anyhow::Result<PathBuf> {
    let find = || -> Option<PathBuf> {
        if name.contains('/') {
            return Some(PathBuf::from(name)).filter(|p| p.exists());
        }
        let path = std::env::var("PATH").unwrap_or_default();
        let found = path
            .split(':')
            .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
            .map(|d| Path::new(d).join(name))
            .find(|p| p.exists());
        found
    };
    if let Some(bin) = find() {
        return Ok(bin);
    }
    if name.contains('/') || !procfs::is_root() {
        bail!("{name} not found: install it (Debian: apt-get install nats-server) or pass --nats-bin PATH");
    }
    eprintln!("nats-server not found: installing Debian's package (apt-get install -y nats-server) …");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "nats-server"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").args(["update", "-qq"]).stdout(Stdio::null()).status();
        anyhow::ensure!(
            install(),
            "apt-get install nats-server failed: install it by hand or pass --nats-bin PATH"
        );
    }
    find().context("nats-server installed but not found on PATH or in /usr/sbin")
}
