//! The `corrupt` fault: a follower is stopped, its data files damaged, and it is started
//! again. A node that refuses its files is rebuilt from the others; one that starts anyway
//! must end with the same push log as everyone else (the checker compares the replicas).
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::damage::damage_files;
use super::{Ctx, Kind};
use crate::procs::Started;

/// Stops a follower, damages its data files, starts it again. A node that refuses its
/// files is rebuilt from the others (removed, wiped, added back under a new id); one that
/// starts anyway must serve the same log as everyone else (checked at the end). Only with
/// three voters or more and no membership change under way: the others must remain a
/// majority if this one's data is lost for good.
pub(super) async fn corrupt(ctx: &Ctx, rng: &mut StdRng) -> anyhow::Result<()> {
    // The others must stay a majority if this one's data is lost for good: no membership
    // change meanwhile, and three voters at least.
    let Ok(_no_member_change) = ctx.voter_loss.try_lock() else { return Ok(()) };
    if ctx.voters() < 3 {
        return Ok(());
    }
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
