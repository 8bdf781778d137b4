//! The cluster under test as the harness sees it: which host runs which role, the command
//! line each `goim` process gets, who the voters are (ids change when a node is rebuilt),
//! and what the logic nodes say about themselves over HTTP (`/cluster/status`,
//! `/goim/log`, membership changes).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::checker::{LogRecord, Replica};
use crate::hosts::Network;
use crate::procs::Spec;

pub const QUIC_PORT: u16 = 3119;
pub const HTTP_PORT: u16 = 3111;
pub const TCP_PORT: u16 = 3101;
pub const WS_PORT: u16 = 3102;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Logic,
    Comet,
    Job,
}

/// Host names and the node ids of the logic voters.
pub struct Topology {
    pub goim: PathBuf,
    pub results: PathBuf,
    pub logic: Vec<String>,
    pub comets: Vec<String>,
    pub jobs: Vec<String>,
    /// Extra flags for every logic node (e.g. the unsafe mode).
    pub logic_flags: Vec<String>,
    ips: BTreeMap<String, String>,
    prefixes: BTreeMap<String, Vec<String>>,
    /// Current voter ids by host; a rebuilt host gets a fresh id.
    ids: Mutex<Ids>,
}

struct Ids {
    by_host: BTreeMap<String, u64>,
    /// The voters of the first start (every logic node is started with this `--peers`).
    initial_peers: String,
    next: u64,
}

impl Topology {
    pub fn new(
        net: &Network,
        goim: PathBuf,
        results: PathBuf,
        logic: usize,
        comets: usize,
        jobs: usize,
    ) -> Topology {
        let logic: Vec<String> = (1..=logic).map(|i| format!("n{i}")).collect();
        let comets = (1..=comets).map(|i| format!("c{i}")).collect();
        let jobs = (1..=jobs).map(|i| format!("j{i}")).collect();
        let ips: BTreeMap<String, String> =
            net.hosts.iter().map(|h| (h.name.clone(), h.ip.to_string())).collect();
        let prefixes = net.hosts.iter().map(|h| (h.name.clone(), net.exec_prefix(&h.name))).collect();
        let by_host: BTreeMap<String, u64> =
            logic.iter().enumerate().map(|(i, h)| (h.clone(), i as u64 + 1)).collect();
        let initial_peers = by_host
            .iter()
            .map(|(h, id)| format!("{id}={}:{QUIC_PORT}", ips.get(h).map(String::as_str).unwrap_or("")))
            .collect::<Vec<_>>()
            .join(",");
        let next = logic.len() as u64 + 1;
        Topology {
            goim,
            results,
            logic,
            comets,
            jobs,
            logic_flags: Vec::new(),
            ips,
            prefixes,
            ids: Mutex::new(Ids { by_host, initial_peers, next }),
        }
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, Ids> {
        match self.ids.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Every host name, logic first.
    pub fn all(&self) -> Vec<String> {
        self.logic.iter().chain(&self.comets).chain(&self.jobs).cloned().collect()
    }

    pub fn role(&self, host: &str) -> Role {
        if self.comets.iter().any(|h| h == host) {
            Role::Comet
        } else if self.jobs.iter().any(|h| h == host) {
            Role::Job
        } else {
            Role::Logic
        }
    }

    pub fn ip(&self, host: &str) -> &str {
        self.ips.get(host).map(String::as_str).unwrap_or("0.0.0.0")
    }

    pub fn http(&self, host: &str) -> String {
        format!("{}:{HTTP_PORT}", self.ip(host))
    }

    pub fn quic(&self, host: &str) -> String {
        format!("{}:{QUIC_PORT}", self.ip(host))
    }

    pub fn tcp(&self, host: &str) -> String {
        format!("{}:{TCP_PORT}", self.ip(host))
    }

    pub fn ws(&self, host: &str) -> String {
        format!("{}:{WS_PORT}", self.ip(host))
    }

    pub fn node_id(&self, host: &str) -> Option<u64> {
        self.ids().by_host.get(host).copied()
    }

    pub fn host_of(&self, id: u64) -> Option<String> {
        self.ids().by_host.iter().find(|(_, i)| **i == id).map(|(h, _)| h.clone())
    }

    /// A fresh node id for `host` (rebuilt from nothing: its old id is never reused, so no
    /// peer can mistake the empty node for the voter it was).
    pub fn renumber(&self, host: &str) -> u64 {
        let mut ids = self.ids();
        let id = ids.next;
        ids.next += 1;
        ids.by_host.insert(host.to_string(), id);
        id
    }

    pub fn data_dir(&self, host: &str) -> PathBuf {
        self.results.join("nodes").join(host).join("data")
    }

    fn log_file(&self, host: &str) -> PathBuf {
        self.results.join("nodes").join(host).join("goim.log")
    }

    /// The process spec of `host` with its current node id.
    pub fn spec(&self, host: &str) -> Spec {
        let mut argv = self.prefixes.get(host).cloned().unwrap_or_default();
        argv.push(self.goim.display().to_string());
        argv.push("run".into());
        let ip = self.ip(host).to_string();
        let logic_addrs = self.logic.iter().map(|h| self.quic(h)).collect::<Vec<_>>().join(",");
        let mut flag = |k: &str, v: String| {
            argv.push(format!("--{k}"));
            argv.push(v);
        };
        flag("data-dir", self.data_dir(host).display().to_string());
        flag("http-addr", format!("{ip}:{HTTP_PORT}"));
        flag("quic-addr", format!("{ip}:{QUIC_PORT}"));
        flag("log", "info,openraft=warn,openraft::core::raft_core=error".into());
        match self.role(host) {
            Role::Logic => {
                let ids = self.ids();
                flag("node-id", ids.by_host.get(host).copied().unwrap_or(0).to_string());
                flag("roles", "logic".into());
                flag("peers", ids.initial_peers.clone());
                drop(ids);
                // Logic expires a comet 10 s after its last report (comets report every 2 s),
                // so a killed comet's sessions leave the tables within a run.
                flag("comet-ttl-ms", "10000".into());
                argv.extend(self.logic_flags.iter().cloned());
            }
            Role::Comet => {
                flag("roles", "comet".into());
                flag("logic", logic_addrs);
                flag("tcp-addr", format!("{ip}:{TCP_PORT}"));
                flag("ws-addr", format!("{ip}:{WS_PORT}"));
                flag("renew-interval-ms", "2000".into());
            }
            Role::Job => {
                flag("roles", "job".into());
                flag("logic", logic_addrs);
            }
        }
        Spec {
            name: host.to_string(),
            argv,
            data_dir: self.data_dir(host),
            log: self.log_file(host),
            http: self.http(host),
        }
    }
}

/// The part of `GET /cluster/status` the harness reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub leader: Option<u64>,
    pub term: u64,
    pub applied_index: Option<u64>,
    #[serde(default)]
    pub voters: Vec<u64>,
    pub push_log: PushLogHead,
    #[serde(default)]
    pub jobs: Vec<JobStatus>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PushLogHead {
    pub first_seq: u64,
    pub last_seq: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JobStatus {
    pub offset: u64,
}

#[derive(Debug, Deserialize)]
struct Reply<T> {
    code: i64,
    #[serde(default)]
    message: String,
    data: Option<T>,
}

/// HTTP calls to logic nodes.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
}

impl Api {
    pub fn new(timeout: Duration) -> anyhow::Result<Api> {
        Ok(Api { http: reqwest::Client::builder().timeout(timeout).build()? })
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, url: String) -> anyhow::Result<T> {
        let reply: Reply<T> = self.http.get(&url).send().await?.json().await?;
        if reply.code != 0 {
            bail!("{url}: {} {}", reply.code, reply.message);
        }
        reply.data.with_context(|| format!("{url}: no data"))
    }

    pub async fn status(&self, http: &str) -> anyhow::Result<Status> {
        self.get(format!("http://{http}/cluster/status")).await
    }

    /// `POST /cluster/{add,remove}` on `http`.
    pub async fn membership(&self, http: &str, query: &str) -> anyhow::Result<()> {
        let url = format!("http://{http}/cluster/{query}");
        let reply: Reply<serde_json::Value> = self.http.post(&url).send().await?.json().await?;
        if reply.code != 0 {
            bail!("{url}: {} {}", reply.code, reply.message);
        }
        Ok(())
    }

    /// The whole applied push log of one replica, with its status.
    pub async fn replica(&self, host: &str, http: &str) -> Replica {
        match self.read_replica(host, http).await {
            Ok(r) => r,
            Err(e) => Replica {
                node: host.to_string(),
                error: Some(format!("{e:#}")),
                last_seq: 0,
                applied_index: None,
                job_offset: None,
                records: Vec::new(),
            },
        }
    }

    async fn read_replica(&self, host: &str, http: &str) -> anyhow::Result<Replica> {
        let status = self.status(http).await?;
        let mut records = Vec::new();
        let mut from = status.push_log.first_seq.max(1);
        loop {
            let page: LogPage = self.get(format!("http://{http}/goim/log?from={from}&limit=10000")).await?;
            let Some(last) = page.records.last().map(|r| r.seq) else { break };
            records.extend(page.records.into_iter().map(LogRecordJson::into_record));
            if last >= page.last_seq {
                break;
            }
            from = last + 1;
        }
        Ok(Replica {
            node: host.to_string(),
            error: None,
            last_seq: status.push_log.last_seq,
            applied_index: status.applied_index,
            job_offset: status.jobs.first().map(|j| j.offset),
            records,
        })
    }
}

#[derive(Deserialize)]
struct LogPage {
    last_seq: u64,
    records: Vec<LogRecordJson>,
}

#[derive(Deserialize)]
struct LogRecordJson {
    seq: u64,
    target: serde_json::Value,
    op: i32,
    body: String,
}

impl LogRecordJson {
    fn into_record(self) -> LogRecord {
        let s = |k: &str| self.target.get(k).and_then(|v| v.as_str()).map(String::from);
        LogRecord {
            seq: self.seq,
            kind: s("type").unwrap_or_default(),
            room: s("room"),
            room_seq: self.target.get("room_seq").and_then(|v| v.as_u64()),
            comet: s("comet"),
            op: self.op,
            body: self.body,
        }
    }
}

/// Writes `replicas.json` beside the history.
pub fn save_replicas(dir: &Path, state: &crate::checker::FinalState) -> anyhow::Result<()> {
    std::fs::write(dir.join("replicas.json"), serde_json::to_vec(state)?)?;
    Ok(())
}
