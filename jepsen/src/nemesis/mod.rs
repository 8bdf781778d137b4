//! The nemeses: faults injected into the running cluster, one at a time on a schedule
//! (`kill`, `pause`, `partition`, `loss`, `slow`, `corrupt`), with membership changes
//! (`member`) running beside them. Each fault is logged as a start / stop pair with what
//! exactly it did; `Ctx::heal` undoes everything before the quiet period.
mod corrupt;
mod ctx;
mod damage;
mod member;

pub use ctx::Ctx;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::cluster::Role;
use crate::firewall::PartitionShape;
use crate::procs::State;

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

/// Runs the scheduled faults until `stop`: every `interval`, one fault from `kinds`
/// (member excepted) held for half to all of the interval, then healed. `member`, when
/// listed, runs in its own loop at the same time.
pub async fn run(ctx: Arc<Ctx>, kinds: Vec<Kind>, interval: Duration, seed: u64, stop: Arc<AtomicBool>) {
    let mut member = None;
    if kinds.contains(&Kind::Member) {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        member = Some(tokio::spawn(async move { member::run(ctx, interval, seed ^ 0x5eed, stop).await }));
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
        Kind::Corrupt => corrupt::corrupt(ctx, &mut rng).await?,
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
