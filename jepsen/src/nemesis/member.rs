//! The `member` fault, beside the others: a voter is removed, later wiped and added back
//! under a new id, again and again, always leaving a majority of the initial voters.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use super::{sleep_unless, Ctx, Kind};

/// Membership changes beside the other faults: remove a voter, later add it back as a new
/// node, again and again.
pub(super) async fn run(ctx: Arc<Ctx>, interval: Duration, seed: u64, stop: Arc<AtomicBool>) {
    let mut rng = StdRng::seed_from_u64(seed);
    sleep_unless(&stop, interval).await;
    while !stop.load(Ordering::Relaxed) {
        // Not while a voter's data is being damaged (`corrupt`), nor one meanwhile.
        let no_data_loss = ctx.voter_loss.lock().await;
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
        drop(no_data_loss);
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
