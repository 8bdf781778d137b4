//! Test harness: runs the real `goim` binary as a child process on free loopback ports with
//! a temp data dir, waits for `/health`, and kills it on drop. Plus small HTTP helpers.
#![allow(dead_code)] // each test binary uses a different subset of the harness

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Ports {
    pub http: u16,
    pub tcp: u16,
    pub ws: u16,
    pub quic: u16,
}

impl Ports {
    pub fn free() -> Ports {
        let tcp_port = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let quic = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Ports { http: tcp_port(), tcp: tcp_port(), ws: tcp_port(), quic }
    }
}

pub struct Node {
    pub child: Option<Child>,
    pub ports: Ports,
    pub data_dir: PathBuf,
    pub extra: Vec<String>,
    /// A command the binary runs under (e.g. `prlimit --nofile=N:N --`), empty for none.
    pub launcher: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Node {
    /// Starts a one-node cluster with every role; `extra` are more `goim run` flags.
    pub async fn start(extra: &[&str]) -> Node {
        Node::start_under(&[], extra).await
    }

    /// `start`, the binary run by `launcher` (a command taking the program and its
    /// arguments, e.g. `["prlimit", "--nofile=512:512", "--"]`).
    pub async fn start_under(launcher: &[&str], extra: &[&str]) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let mut node = Node {
            child: None,
            ports: Ports::free(),
            data_dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            launcher: launcher.iter().map(|s| s.to_string()).collect(),
            _tmp: Some(tmp),
        };
        node.spawn().await;
        node
    }

    /// The node's process id (the launcher execs the binary, so it is the binary's).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// (Re)starts the process on the same ports and data dir.
    pub async fn spawn(&mut self) {
        let log = self.data_dir.parent().unwrap().join("node.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
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
            .arg("run")
            .args(["--data-dir", self.data_dir.to_str().unwrap()])
            .args(["--http-addr", &format!("127.0.0.1:{}", self.ports.http)])
            .args(["--tcp-addr", &format!("127.0.0.1:{}", self.ports.tcp)])
            .args(["--ws-addr", &format!("127.0.0.1:{}", self.ports.ws)])
            .args(["--quic-addr", &format!("127.0.0.1:{}", self.ports.quic)])
            .args(&self.extra)
            .env("GOIM_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn goim");
        self.child = Some(child);
        self.wait_healthy(Duration::from_secs(30)).await;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.parent().unwrap().join("node.log")).unwrap_or_default()
    }

    pub async fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let client = reqwest::Client::new();
        loop {
            let url = format!("{}/health", self.http());
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "node not healthy in {within:?}; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.http)
    }

    pub fn tcp(&self) -> String {
        format!("127.0.0.1:{}", self.ports.tcp)
    }

    pub fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}/sub", self.ports.ws)
    }

    /// SIGKILL: nothing gets to run, nothing acknowledged may be lost.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the graceful path.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        c.wait().unwrap()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// POSTs and returns the whole JSON reply (goim's envelope).
pub async fn post(url: &str, body: impl Into<reqwest::Body>) -> Value {
    reqwest::Client::new().post(url).body(body).send().await.unwrap().json().await.unwrap()
}

pub async fn get(url: &str) -> Value {
    reqwest::Client::new().get(url).send().await.unwrap().json().await.unwrap()
}

/// Polls `f` every 50 ms until it returns Some, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub mod cluster;

/// The node's `/metrics` text.
pub async fn metrics(node: &Node) -> String {
    reqwest::get(format!("{}/metrics", node.http())).await.unwrap().text().await.unwrap()
}

/// The sum of every sample whose line starts with `prefix` (a name, or a name with the
/// leading labels, e.g. `goim_x_total{reason="a"`).
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sum of every sample of the metric named exactly `name` (any labels).
pub fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}
