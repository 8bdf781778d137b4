//! `goim demo --nodes 3`: a whole cluster on one machine in one command, for showing the
//! web demo with something behind it: N logic voters, comet and job processes, each a child
//! `goim run` of this same binary on loopback with its own data dir and log file. It prints
//! the chat URL and each process, restarts a process that dies (so a `kill -9` shows the
//! cluster failing over and the node coming back), and stops them all on Ctrl-C or SIGTERM.
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Logic nodes (the Raft voters).
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// Comet processes (where browsers connect).
    #[arg(long, default_value_t = 2)]
    pub comets: u16,
    /// Job processes (one holds the lease, the others stand by).
    #[arg(long, default_value_t = 1)]
    pub jobs: u16,
    /// The loopback address every process listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// The first logic node's HTTP port (the URL to open). Process k uses the ports of the
    /// defaults (TCP 3101, WS 3102, HTTP 3111, QUIC 3119) moved by `this - 3111 + 20·k`.
    #[arg(long, default_value_t = 3111)]
    pub http_port: u16,
    /// Where the processes keep their data and logs, one folder each. Starting again on the
    /// same folder resumes the same cluster.
    #[arg(long, default_value = "goim-demo-data")]
    pub data_dir: PathBuf,
    /// Seconds before a process that died is started again (0: never).
    #[arg(long, default_value_t = 3)]
    pub restart_secs: u64,
}

/// One child process: its name, command line and, while running, the process.
struct Proc {
    name: String,
    args: Vec<String>,
    log: PathBuf,
    http: SocketAddr,
    child: Option<Child>,
}

impl Proc {
    fn spawn(&mut self, exe: &Path) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(exe)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        println!(
            "  {:<8} pid {:<7} http://{}  log {}",
            self.name,
            child.id().unwrap_or(0),
            self.http,
            self.log.display()
        );
        self.child = Some(child);
        Ok(())
    }
}

/// Ports of process `k`: the defaults moved by `offset + 20·k`.
fn addrs(host: IpAddr, offset: i32, k: u16) -> anyhow::Result<[SocketAddr; 4]> {
    let port = |default: i32| -> anyhow::Result<SocketAddr> {
        let p = default + offset + 20 * i32::from(k);
        match u16::try_from(p) {
            Ok(p) if p > 0 => Ok(SocketAddr::new(host, p)),
            _ => bail!("--http-port leaves port {p} out of range for process {k}"),
        }
    };
    Ok([port(3101)?, port(3102)?, port(3111)?, port(3119)?])
}

/// The child processes' command lines: logic voters first, then comets, then jobs.
fn plan(args: &DemoArgs) -> anyhow::Result<Vec<Proc>> {
    if args.nodes == 0 || args.comets == 0 || args.jobs == 0 {
        bail!("a demo needs at least one logic node, one comet and one job");
    }
    let offset = i32::from(args.http_port) - 3111;
    let total = args.nodes + args.comets + args.jobs;
    let all: Vec<[SocketAddr; 4]> =
        (0..total).map(|k| addrs(args.host, offset, k)).collect::<Result<_, _>>()?;
    let peers: Vec<String> =
        (0..args.nodes).map(|k| format!("{}={}", k + 1, all[usize::from(k)][3])).collect();
    let logic: Vec<String> = (0..args.nodes).map(|k| all[usize::from(k)][3].to_string()).collect();
    // Quicker than the defaults so a killed node shows in the demo within seconds.
    let timings = ["--renew-interval-ms", "1000", "--comet-ttl-ms", "4000", "--job-lease-ms", "3000"];
    let mut procs = Vec::new();
    for k in 0..total {
        let [tcp, ws, http, quic] = all[usize::from(k)];
        let (name, role, id, link) = if k < args.nodes {
            (format!("logic{}", k + 1), "logic", u64::from(k) + 1, ["--peers".to_string(), peers.join(",")])
        } else if k < args.nodes + args.comets {
            (
                format!("comet{}", k - args.nodes + 1),
                "comet",
                u64::from(k) + 1,
                ["--logic".into(), logic.join(",")],
            )
        } else {
            let j = k - args.nodes - args.comets + 1;
            (format!("job{j}"), "job", u64::from(k) + 1, ["--logic".into(), logic.join(",")])
        };
        let dir = args.data_dir.join(&name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut a: Vec<String> = vec![
            "run".into(),
            "--node-id".into(),
            id.to_string(),
            "--roles".into(),
            role.into(),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--http-addr".into(),
            http.to_string(),
            "--tcp-addr".into(),
            tcp.to_string(),
            "--ws-addr".into(),
            ws.to_string(),
            "--quic-addr".into(),
            quic.to_string(),
        ];
        a.extend(link);
        a.extend(timings.iter().map(|s| s.to_string()));
        procs.push(Proc { name, args: a, log: dir.join("node.log"), http, child: None });
    }
    Ok(procs)
}

/// Whether `GET /health` on `http` answers 200.
async fn healthy(client: &reqwest::Client, http: SocketAddr) -> bool {
    matches!(client.get(format!("http://{http}/health")).send().await, Ok(r) if r.status().is_success())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the goim binary")?;
    let mut procs = plan(args)?;
    println!(
        "goim demo: {} logic, {} comet, {} job processes under {}",
        args.nodes,
        args.comets,
        args.jobs,
        args.data_dir.display()
    );
    for p in &mut procs {
        p.spawn(&exe)?;
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let front = procs[0].http;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !healthy(&client, front).await {
        if tokio::time::Instant::now() > deadline {
            bail!("the cluster did not become healthy within 60 s: see {}", procs[0].log.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!();
    println!("ready: open http://{front}/  (any logic node's HTTP serves the page)");
    println!("push:  curl -d 'hello' 'http://{front}/goim/push/room?operation=1000&type=live&room=1000'");
    println!("try:   kill -9 a pid above; the page's cluster panel shows it down, then back");
    println!("stop:  Ctrl-C");

    let stop = stop_signal();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut dead_since: Vec<Option<tokio::time::Instant>> = vec![None; procs.len()];
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        for (p, since) in procs.iter_mut().zip(dead_since.iter_mut()) {
            if let Some(child) = &mut p.child {
                if let Ok(Some(status)) = child.try_wait() {
                    println!("{} exited ({status})", p.name);
                    p.child = None;
                    *since = Some(tokio::time::Instant::now());
                }
            }
            let due = since.is_some_and(|t| {
                args.restart_secs > 0 && t.elapsed() >= Duration::from_secs(args.restart_secs)
            });
            if p.child.is_none() && due {
                println!("restarting {}", p.name);
                *since = None;
                if let Err(e) = p.spawn(&exe) {
                    println!("{}: {e:#}", p.name);
                    *since = Some(tokio::time::Instant::now());
                }
            }
        }
    }
    println!("\nstopping");
    stop_all(&mut procs, usize::from(args.nodes)).await;
    Ok(())
}

/// Asks every child to stop (SIGTERM: they shut down cleanly), comets and jobs first so they
/// can still tell logic they leave, waits up to 5 s a group, then kills whatever is left.
async fn stop_all(procs: &mut [Proc], logic: usize) {
    let (voters, others) = procs.split_at_mut(logic.min(procs.len()));
    for group in [others, voters] {
        for p in group.iter() {
            if let Some(pid) = p.child.as_ref().and_then(Child::id) {
                let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
            }
        }
        for p in group.iter_mut() {
            if let Some(mut child) = p.child.take() {
                if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> DemoArgs {
        DemoArgs {
            nodes: 3,
            comets: 2,
            jobs: 1,
            host: "127.0.0.1".parse().unwrap(),
            http_port: 3111,
            data_dir: PathBuf::from("/tmp/demo"),
            restart_secs: 3,
        }
    }

    #[test]
    fn the_plan_gives_every_process_its_own_ports_and_links_them() {
        let procs = plan(&args()).unwrap();
        let names: Vec<&str> = procs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["logic1", "logic2", "logic3", "comet1", "comet2", "job1"]);
        assert_eq!(procs[0].http.to_string(), "127.0.0.1:3111");
        let mut ports: Vec<String> = procs
            .iter()
            .flat_map(|p| {
                let flag = |f: &str| p.args[p.args.iter().position(|a| a == f).unwrap() + 1].clone();
                [flag("--tcp-addr"), flag("--ws-addr"), flag("--http-addr"), flag("--quic-addr")]
            })
            .collect();
        let n = ports.len();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), n, "a port is used twice");
        let peers = "1=127.0.0.1:3119,2=127.0.0.1:3139,3=127.0.0.1:3159";
        assert!(procs[0].args.windows(2).any(|w| w[0] == "--peers" && w[1] == peers));
        let logic = "127.0.0.1:3119,127.0.0.1:3139,127.0.0.1:3159";
        assert!(procs[4].args.windows(2).any(|w| w[0] == "--logic" && w[1] == logic));
        assert!(procs[5].args.windows(2).any(|w| w[0] == "--roles" && w[1] == "job"));
    }

    #[test]
    fn ports_out_of_range_are_refused() {
        let mut a = args();
        a.http_port = 65_500;
        assert!(plan(&a).is_err());
        a.http_port = 3111;
        a.comets = 0;
        assert!(plan(&a).is_err());
    }
}
