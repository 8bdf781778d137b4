//! What every nemesis acts on: the topology, the processes, the firewall, the history; which
//! hosts a fault holds right now; and the operations several faults share: finding the
//! leader, taking a voter out and bringing it back empty under a new id, healing it all.
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use super::Kind;
use crate::cluster::{Api, Role, Topology};
use crate::firewall::Firewall;
use crate::history::{History, Phase, What};
use crate::procs::{Procs, Started, State};

/// Everything a nemesis acts on.
pub struct Ctx {
    pub topo: Arc<Topology>,
    pub procs: Arc<Procs>,
    pub fw: Arc<Firewall>,
    pub api: Api,
    pub history: History,
    /// Hosts a fault is acting on right now (no second fault takes them).
    busy: Mutex<BTreeSet<String>>,
    /// Logic hosts taken out of the voters (to be added back under a new id).
    removed: Mutex<BTreeSet<String>>,
    /// Held by a fault that takes a voter out for a while (`member`) or may lose its data
    /// for good (`corrupt`): one at a time, so that together they never leave the voters
    /// without a majority that still has its data. (Before nodes refused messages for
    /// another id, a voter rebuilt at the lost one's address answered for it, and the harness
    /// recovered from such a loss unsafely: JEPSEN.md, finding 10.)
    pub(super) voter_loss: tokio::sync::Mutex<()>,
}

pub(super) fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Ctx {
    pub fn new(topo: Arc<Topology>, procs: Arc<Procs>, fw: Arc<Firewall>, api: Api, history: History) -> Ctx {
        Ctx {
            topo,
            procs,
            fw,
            api,
            history,
            busy: Mutex::new(BTreeSet::new()),
            removed: Mutex::new(BTreeSet::new()),
            voter_loss: tokio::sync::Mutex::new(()),
        }
    }

    pub(super) fn start(&self, kind: Kind, detail: &str) {
        self.history.log(What::Nemesis {
            phase: Phase::Start,
            kind: kind.name().into(),
            detail: detail.into(),
        });
    }

    pub(super) fn stop(&self, kind: Kind, detail: &str) {
        self.history.log(What::Nemesis {
            phase: Phase::Stop,
            kind: kind.name().into(),
            detail: detail.into(),
        });
    }

    pub(super) fn note(&self, text: String) {
        self.history.log(What::Note { text });
    }

    /// Logic hosts that are voters (not taken out by `member` or a rebuild).
    pub(super) fn voters(&self) -> usize {
        let removed = locked(&self.removed);
        self.topo.logic.iter().filter(|h| !removed.contains(*h)).count()
    }

    /// Logic hosts that are voters and whose process runs.
    pub(super) fn live_voters(&self) -> Vec<String> {
        let removed = locked(&self.removed).clone();
        self.topo
            .logic
            .iter()
            .filter(|h| !removed.contains(*h) && self.procs.state(h) == Some(State::Running))
            .cloned()
            .collect()
    }

    pub(super) fn claim(&self, host: &str) -> bool {
        locked(&self.busy).insert(host.to_string())
    }

    pub(super) fn release(&self, host: &str) {
        locked(&self.busy).remove(host);
    }

    pub(super) fn is_busy(&self, host: &str) -> bool {
        locked(&self.busy).contains(host)
    }

    /// The host of the leader a majority of the answering logic nodes name.
    pub async fn leader(&self) -> Option<(String, u64)> {
        let mut votes: std::collections::BTreeMap<u64, (usize, u64)> = Default::default();
        let calls = self.topo.logic.iter().map(|h| {
            let api = self.api.clone();
            let http = self.topo.http(h);
            async move { api.status(&http).await.ok() }
        });
        for status in futures_join(calls).await.into_iter().flatten() {
            if let Some(l) = status.leader {
                let e = votes.entry(l).or_insert((0, 0));
                e.0 += 1;
                e.1 = e.1.max(status.term);
            }
        }
        let (id, (_, term)) = votes.into_iter().max_by_key(|(_, (n, _))| *n)?;
        Some((self.topo.host_of(id)?, term))
    }

    /// Any logic host that answers its status: where membership changes are sent.
    pub(super) async fn any_live_logic(&self, not: &str) -> Option<String> {
        for h in &self.topo.logic {
            if h != not
                && self.procs.state(h) == Some(State::Running)
                && self.api.status(&self.topo.http(h)).await.is_ok()
            {
                return Some(self.topo.http(h));
            }
        }
        None
    }

    /// Sends a membership change to live logic nodes until one commits it (or `wait` ends).
    pub(super) async fn change_membership(
        &self,
        query: &str,
        not: &str,
        wait: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut last = anyhow::anyhow!("no live logic node");
        while tokio::time::Instant::now() < deadline {
            if let Some(http) = self.any_live_logic(not).await {
                match self.api.membership(&http, query).await {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e,
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(last.context(format!("membership change {query}")))
    }

    /// Takes `host` out of the voters (its process is stopped). Its data is kept until
    /// `rejoin` wipes it.
    pub(super) async fn remove(&self, host: &str, wait: Duration) -> anyhow::Result<u64> {
        let id = self.topo.node_id(host).context("not a logic host")?;
        self.change_membership(&format!("remove?id={id}"), host, wait).await?;
        locked(&self.removed).insert(host.to_string());
        self.procs.kill(host).await?;
        Ok(id)
    }

    /// Brings a removed (or refused) logic host back as a new, empty node under a fresh id:
    /// wipe, start, `cluster add` (learner, caught up by snapshot, then voter).
    pub(super) async fn rejoin(&self, host: &str, wait: Duration) -> anyhow::Result<u64> {
        self.procs.kill(host).await?;
        self.procs.wipe(host)?;
        let id = self.topo.renumber(host);
        self.procs.set_argv(host, self.topo.spec(host).argv);
        self.procs.restart(host)?;
        let addr = self.topo.quic(host);
        self.change_membership(&format!("add?id={id}&addr={addr}"), host, wait).await?;
        locked(&self.removed).remove(host);
        Ok(id)
    }

    /// Undoes every fault: links, paused and dead processes, removed voters; then waits
    /// for every node to be healthy again.
    pub async fn heal(&self) -> anyhow::Result<()> {
        self.fw.heal().await?;
        for h in self.topo.all() {
            self.procs.resume(&h)?;
        }
        let removed: Vec<String> = locked(&self.removed).iter().cloned().collect();
        for h in self.topo.all() {
            if self.procs.state(&h) == Some(State::Down) && !removed.contains(&h) {
                self.procs.restart(&h)?;
            }
        }
        for h in &removed {
            match self.rejoin(h, Duration::from_secs(30)).await {
                Ok(id) => self.note(format!("heal: {h} rejoined as node {id}")),
                Err(e) => self.note(format!("heal: {h} could not rejoin: {e:#}")),
            }
        }
        for h in self.topo.all() {
            match self.procs.wait_started(&h, Duration::from_secs(30)).await {
                Started::Healthy => {}
                Started::Exited { code, tail } => {
                    self.note(format!("heal: {h} exited ({code:?}): {tail}"));
                    // A node that refuses its data after the faults is rebuilt from the others.
                    if self.topo.role(&h) == Role::Logic {
                        let _ = self.remove(&h, Duration::from_secs(20)).await;
                        match self.rejoin(&h, Duration::from_secs(30)).await {
                            Ok(id) => self.note(format!("heal: {h} rebuilt as node {id}")),
                            Err(e) => self.note(format!("heal: {h} could not be rebuilt: {e:#}")),
                        }
                    } else {
                        let _ = self.procs.restart(&h);
                    }
                }
                Started::Pending => self.note(format!("heal: {h} not healthy after 30 s")),
            }
        }
        Ok(())
    }
}

/// Joins futures concurrently (the harness has no futures crate of its own).
async fn futures_join<F: std::future::Future + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}
