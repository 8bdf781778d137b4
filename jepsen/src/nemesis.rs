//! The nemeses: faults injected into the running cluster, one at a time on a schedule
//! (`kill`, `pause`, `partition`, `loss`, `slow`, `corrupt`), with membership changes
//! (`member`) running beside them. Each fault is logged as a start / stop pair with what
//! exactly it did; `heal` undoes everything before the quiet period.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::cluster::{Api, Role, Topology};
use crate::firewall::{Firewall, PartitionShape};
use crate::history::{History, Phase, What};
use crate::procs::{Procs, Started, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Kill,
    Pause,
    Partition,
    Loss,
    Slow,
    Corrupt,
    Member,
}

impl Kind {
    pub const ALL: [Kind; 7] =
        [Kind::Kill, Kind::Pause, Kind::Partition, Kind::Loss, Kind::Slow, Kind::Corrupt, Kind::Member];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Partition => "partition",
            Kind::Loss => "loss",
            Kind::Slow => "slow",
            Kind::Corrupt => "corrupt",
            Kind::Member => "member",
        }
    }

    /// `kill,pause,…` or `all`.
    pub fn parse_list(list: &str) -> anyhow::Result<Vec<Kind>> {
        let mut kinds = BTreeSet::new();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            if word == "all" {
                kinds.extend(Kind::ALL);
                continue;
            }
            match Kind::ALL.iter().find(|k| k.name() == word) {
                Some(k) => kinds.insert(*k),
                None => bail!(
                    "unknown nemesis {word:?} (expected kill, pause, partition, loss, slow, corrupt, member, all)"
                ),
            };
        }
        Ok(kinds.into_iter().collect())
    }
}

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
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
        }
    }

    fn start(&self, kind: Kind, detail: &str) {
        self.history.log(What::Nemesis {
            phase: Phase::Start,
            kind: kind.name().into(),
            detail: detail.into(),
        });
    }

    fn stop(&self, kind: Kind, detail: &str) {
        self.history.log(What::Nemesis {
            phase: Phase::Stop,
            kind: kind.name().into(),
            detail: detail.into(),
        });
    }

    fn note(&self, text: String) {
        self.history.log(What::Note { text });
    }

    /// Logic hosts that are voters and whose process runs.
    fn live_voters(&self) -> Vec<String> {
        let removed = locked(&self.removed).clone();
        self.topo
            .logic
            .iter()
            .filter(|h| !removed.contains(*h) && self.procs.state(h) == Some(State::Running))
            .cloned()
            .collect()
    }

    fn claim(&self, host: &str) -> bool {
        locked(&self.busy).insert(host.to_string())
    }

    fn release(&self, host: &str) {
        locked(&self.busy).remove(host);
    }

    fn is_busy(&self, host: &str) -> bool {
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
    async fn any_live_logic(&self, not: &str) -> Option<String> {
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
    async fn change_membership(&self, query: &str, not: &str, wait: Duration) -> anyhow::Result<()> {
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
    async fn remove(&self, host: &str, wait: Duration) -> anyhow::Result<u64> {
        let id = self.topo.node_id(host).context("not a logic host")?;
        self.change_membership(&format!("remove?id={id}"), host, wait).await?;
        locked(&self.removed).insert(host.to_string());
        self.procs.kill(host).await?;
        Ok(id)
    }

    /// Brings a removed (or refused) logic host back as a new, empty node under a fresh id:
    /// wipe, start, `cluster add` (learner, caught up by snapshot, then voter).
    async fn rejoin(&self, host: &str, wait: Duration) -> anyhow::Result<u64> {
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

/// Runs the scheduled faults until `stop`: every `interval`, one fault from `kinds`
/// (member excepted) held for half to all of the interval, then healed. `member`, when
/// listed, runs in its own loop at the same time.
pub async fn run(ctx: Arc<Ctx>, kinds: Vec<Kind>, interval: Duration, seed: u64, stop: Arc<AtomicBool>) {
    let mut member = None;
    if kinds.contains(&Kind::Member) {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        member = Some(tokio::spawn(async move { member_loop(ctx, interval, seed ^ 0x5eed, stop).await }));
    }
    let faults: Vec<Kind> = kinds.into_iter().filter(|k| *k != Kind::Member).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    // Let the workload settle before the first fault.
    sleep_unless(&stop, interval / 2).await;
    while !stop.load(Ordering::Relaxed) && !faults.is_empty() {
        let kind = *faults.choose(&mut rng).unwrap_or(&Kind::Kill);
        let hold = interval.mul_f64(rng.random_range(0.5..1.0));
        let fault_seed = rng.random();
        if let Err(e) = one_fault(&ctx, kind, hold, fault_seed, &stop).await {
            ctx.note(format!("{} nemesis: {e:#}", kind.name()));
        }
        sleep_unless(&stop, interval.mul_f64(rng.random_range(0.3..0.6))).await;
    }
    if let Some(m) = member {
        let _ = m.await;
    }
}

async fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let deadline = tokio::time::Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn one_fault(
    ctx: &Ctx,
    kind: Kind,
    hold: Duration,
    seed: u64,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    match kind {
        Kind::Kill | Kind::Pause => {
            let Some(host) = pick_process(ctx, &mut rng).await else { return Ok(()) };
            if !ctx.claim(&host) {
                return Ok(());
            }
            let detail = format!("{host}{}", describe_role(ctx, &host).await);
            ctx.start(kind, &detail);
            if kind == Kind::Kill {
                ctx.procs.kill(&host).await?;
            } else {
                ctx.procs.pause(&host)?;
            }
            sleep_unless(stop, hold).await;
            if kind == Kind::Kill {
                ctx.procs.restart(&host)?;
            } else {
                ctx.procs.resume(&host)?;
            }
            ctx.stop(kind, &detail);
            ctx.release(&host);
        }
        Kind::Partition => {
            let nodes = ctx.topo.logic.clone();
            let shape = *PartitionShape::ALL.choose(&mut rng).unwrap_or(&PartitionShape::Halves);
            let leader = ctx.leader().await.map(|(h, _)| h);
            let links = shape.links(&nodes, leader.as_deref(), &mut rng);
            let detail = format!("{}: {}", shape.name(), describe_links(&links));
            ctx.start(kind, &detail);
            ctx.fw.cut_links(&links)?;
            sleep_unless(stop, hold).await;
            ctx.fw.heal().await?;
            ctx.stop(kind, &detail);
        }
        Kind::Loss => {
            let nodes = ctx.topo.logic.clone();
            let percent = rng.random_range(20..=50u8);
            let mut links = Vec::new();
            for a in &nodes {
                for b in &nodes {
                    if a < b && rng.random_bool(0.5) {
                        links.push((a.clone(), b.clone()));
                    }
                }
            }
            let detail = format!("{percent}% on {}", describe_links(&links));
            ctx.start(kind, &detail);
            for (a, b) in &links {
                ctx.fw.loss(a, b, percent)?;
                ctx.fw.loss(b, a, percent)?;
            }
            sleep_unless(stop, hold).await;
            ctx.fw.heal().await?;
            ctx.stop(kind, &detail);
        }
        Kind::Slow => {
            let nodes = ctx.topo.logic.clone();
            let Some(host) = nodes.choose(&mut rng).cloned() else { return Ok(()) };
            // One way; goim's default Raft timing bounds an AppendEntries round trip by the
            // 100 ms heartbeat (docs/JEPSEN.md), so slower links stall a leader by design.
            let delay = rng.random_range(5..=30u64);
            let jitter = rng.random_range(1..=10u64);
            let detail = format!("{host} <-> every logic node: {delay} ms ± {jitter} ms");
            ctx.start(kind, &detail);
            for other in nodes.iter().filter(|o| **o != host) {
                ctx.fw.slow(&host, other, delay, jitter).await?;
                ctx.fw.slow(other, &host, delay, jitter).await?;
            }
            sleep_unless(stop, hold).await;
            ctx.fw.heal().await?;
            ctx.stop(kind, &detail);
        }
        Kind::Corrupt => corrupt(ctx, &mut rng).await?,
        Kind::Member => {}
    }
    Ok(())
}

/// Kill / pause targets: the leader, a random voter, a comet or a job.
async fn pick_process(ctx: &Ctx, rng: &mut StdRng) -> Option<String> {
    let running = |hosts: &[String]| -> Vec<String> {
        hosts
            .iter()
            .filter(|h| ctx.procs.state(h) == Some(State::Running) && !ctx.is_busy(h))
            .cloned()
            .collect()
    };
    match rng.random_range(0..4) {
        0 => ctx.leader().await.map(|(h, _)| h).filter(|h| !ctx.is_busy(h)),
        1 => running(&ctx.live_voters()).choose(rng).cloned(),
        2 => running(&ctx.topo.comets).choose(rng).cloned(),
        _ => running(&ctx.topo.jobs).choose(rng).cloned(),
    }
}

async fn describe_role(ctx: &Ctx, host: &str) -> String {
    match ctx.topo.role(host) {
        Role::Comet => " (comet)".into(),
        Role::Job => " (job)".into(),
        Role::Logic => match ctx.leader().await {
            Some((l, _)) if l == host => " (leader)".into(),
            _ => " (voter)".into(),
        },
    }
}

fn describe_links(links: &[(String, String)]) -> String {
    links.iter().map(|(a, b)| format!("{a}->{b}")).collect::<Vec<_>>().join(" ")
}

/// Stops a follower, damages its data files, starts it again. A node that refuses its
/// files is rebuilt from the others (removed, wiped, added back under a new id); one that
/// starts anyway must serve the same log as everyone else (checked at the end).
async fn corrupt(ctx: &Ctx, rng: &mut StdRng) -> anyhow::Result<()> {
    let leader = ctx.leader().await.map(|(h, _)| h);
    let followers: Vec<String> =
        ctx.live_voters().into_iter().filter(|h| Some(h) != leader.as_ref() && !ctx.is_busy(h)).collect();
    let Some(host) = followers.choose(rng).cloned() else { return Ok(()) };
    if !ctx.claim(&host) {
        return Ok(());
    }
    let result = corrupt_host(ctx, &host, rng).await;
    ctx.release(&host);
    result
}

async fn corrupt_host(ctx: &Ctx, host: &str, rng: &mut StdRng) -> anyhow::Result<()> {
    ctx.procs.kill(host).await?;
    let dir = ctx.procs.data_dir(host).context("no data dir")?;
    let damage = damage_files(&dir, rng)?;
    let detail = format!("{host}: {damage}");
    ctx.start(Kind::Corrupt, &detail);
    ctx.procs.restart(host)?;
    match ctx.procs.wait_started(host, Duration::from_secs(20)).await {
        Started::Exited { code, tail } => {
            let last = tail.lines().last().unwrap_or("").to_string();
            ctx.note(format!("corrupt: {host} refused its data (exit {code:?}): {last}"));
            if tail.contains("panicked at") {
                ctx.note(format!("corrupt: {host} PANICKED: {tail}"));
            }
            let old = ctx.remove(host, Duration::from_secs(20)).await?;
            let new = ctx.rejoin(host, Duration::from_secs(30)).await?;
            ctx.note(format!("corrupt: {host} rebuilt from the others: node {old} -> {new}"));
        }
        Started::Healthy => ctx.note(format!("corrupt: {host} started on its damaged files")),
        Started::Pending => ctx.note(format!("corrupt: {host} running, not healthy after 20 s")),
    }
    ctx.stop(Kind::Corrupt, &detail);
    Ok(())
}

/// Flips bytes in, zeroes a page of, or truncates one of the node's data files; says which.
pub fn damage_files(dir: &Path, rng: &mut impl Rng) -> anyhow::Result<String> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.retain(|(p, len)| *len > 0 && !p.ends_with("goim.log"));
    // sled's log file (the largest) most of the time, any other file otherwise.
    files.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
    let Some((path, len)) = (if rng.random_bool(0.7) { files.first() } else { files.choose(rng) }).cloned()
    else {
        return Ok("no data files to damage".into());
    };
    let name = path.strip_prefix(dir).unwrap_or(&path).display().to_string();
    let mut bytes = std::fs::read(&path)?;
    let what = match rng.random_range(0..3) {
        0 => {
            let n = rng.random_range(1..=32);
            for _ in 0..n {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= rng.random_range(1..=255u8);
            }
            std::fs::write(&path, &bytes)?;
            format!("flipped {n} bytes in {name} ({len} bytes)")
        }
        1 => {
            let at = rng.random_range(0..bytes.len());
            let end = (at + 4096).min(bytes.len());
            bytes[at..end].fill(0);
            std::fs::write(&path, &bytes)?;
            format!("zeroed {} bytes at {at} in {name}", end - at)
        }
        _ => {
            let cut = if rng.random_bool(0.5) {
                rng.random_range(1..=len.min(4096))
            } else {
                rng.random_range(1..=len)
            };
            let file = std::fs::OpenOptions::new().write(true).open(&path)?;
            file.set_len(len - cut)?;
            format!("truncated {name} by {cut} of {len} bytes")
        }
    };
    Ok(what)
}

fn collect_files(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            collect_files(&entry.path(), out)?;
        } else if meta.is_file() {
            out.push((entry.path(), meta.len()));
        }
    }
    Ok(())
}

/// Membership changes beside the other faults: remove a voter, later add it back as a new
/// node, again and again.
async fn member_loop(ctx: Arc<Ctx>, interval: Duration, seed: u64, stop: Arc<AtomicBool>) {
    let mut rng = StdRng::seed_from_u64(seed);
    sleep_unless(&stop, interval).await;
    while !stop.load(Ordering::Relaxed) {
        let candidates: Vec<String> = ctx.live_voters().into_iter().filter(|h| !ctx.is_busy(h)).collect();
        // Keep at least a majority of the initial voters in the group.
        if candidates.len() * 2 > ctx.topo.logic.len() {
            if let Some(host) = candidates.choose(&mut rng).cloned() {
                if ctx.claim(&host) {
                    member_change(&ctx, &host, interval, &stop).await;
                    ctx.release(&host);
                }
            }
        }
        sleep_unless(&stop, interval.mul_f64(rng.random_range(1.0..2.0))).await;
    }
}

async fn member_change(ctx: &Ctx, host: &str, interval: Duration, stop: &AtomicBool) {
    let id = ctx.topo.node_id(host).unwrap_or(0);
    let detail = format!("remove {host} (node {id}), then add it back empty");
    ctx.start(Kind::Member, &detail);
    match ctx.remove(host, Duration::from_secs(10)).await {
        Ok(_) => {
            sleep_unless(stop, interval / 2).await;
            match ctx.rejoin(host, Duration::from_secs(20)).await {
                Ok(new) => ctx.note(format!("member: {host} added back as node {new}")),
                Err(e) => ctx.note(format!("member: adding {host} back failed (heal retries): {e:#}")),
            }
        }
        Err(e) => ctx.note(format!("member: removing {host} failed: {e:#}")),
    }
    ctx.stop(Kind::Member, &detail);
}
