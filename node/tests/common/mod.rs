//! Test harness: runs the real `goim` binary as child processes on free loopback ports with
//! temp data dirs (`cluster::ProcNode`, the one process harness; `Node` is a one-node
//! cluster of it, `cluster::Cluster` many), waits for `/health`, kills them on drop. Plus
//! small HTTP and metrics helpers.
#![allow(dead_code)] // each test binary uses a different subset of the harness

use std::time::{Duration, Instant};

use serde_json::Value;

/// A one-node cluster with every role on 127.0.0.1: the harness's `ProcNode`, started and
/// healthy, with the client-side addresses most tests want.
pub struct Node(pub cluster::ProcNode);

impl std::ops::Deref for Node {
    type Target = cluster::ProcNode;

    fn deref(&self) -> &cluster::ProcNode {
        &self.0
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut cluster::ProcNode {
        &mut self.0
    }
}

impl Node {
    /// Starts a one-node cluster with every role; `extra` are more `goim run` flags.
    pub async fn start(extra: &[&str]) -> Node {
        Node::start_under(&[], extra).await
    }

    /// `start`, the binary run by `launcher` (a command taking the program and its
    /// arguments, e.g. `["prlimit", "--nofile=512:512", "--"]`).
    pub async fn start_under(launcher: &[&str], extra: &[&str]) -> Node {
        let mut node = Node(cluster::ProcNode::standalone(launcher, extra));
        node.spawn().await;
        node
    }

    /// (Re)starts the process on the same ports and data dir; waits until it is healthy.
    pub async fn spawn(&mut self) {
        self.0.spawn();
        self.0.wait_healthy(cluster::START_WITHIN).await;
    }

    pub fn http(&self) -> String {
        self.0.url()
    }

    pub fn tcp(&self) -> String {
        self.0.tcp_addr()
    }

    pub fn ws(&self) -> String {
        self.0.ws_url()
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
