//! Failure detection by the kernel, for fast failover. QUIC cannot tell a `kill -9`'d peer
//! from a slow one before its idle timeout, and openraft only elects after its leader lease
//! plus a random election timeout. But when a process dies, the kernel closes its TCP
//! sockets at once. So every logic node listens on TCP at its QUIC address, greets each
//! connection with who it is and then keeps it open, silent; every voter holds one such
//! connection to each peer. When the connection to the current leader ends, the leader's
//! process is gone: the follower waits out the others' lease on that leader (openraft
//! refuses votes until it expires), staggered by its rank so the followers do not split
//! the vote, and then starts an election at once instead of after its election timeout
//! (and again a few ms later while the others still refuse: their lease may end later).
//! Only an end *after* the greeting counts, so a port taken by something else, or a slow,
//! partitioned or restarting peer, never deposes a leader: those fall back to the timers.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{info, warn};

use goim_net::quic::QuicEndpoint;

use crate::atomic_instant::AtomicInstant;
use crate::types::Raft;

/// What a node says first on a liveness connection: this, then its node id (8 bytes, BE).
const HELLO: &[u8; 12] = b"goim-alive/1";
/// Connections the listener holds at once (peers need one each; the rest is abuse).
const MAX_CONNECTIONS: usize = 64;
/// Margin past the lease before the first try: the other followers heard from the leader
/// a little later, so their lease may still have a few ms to run.
const LEASE_MARGIN: Duration = Duration::from_millis(5);
/// A refused try is followed by another after this times the number of tries so far (5,
/// 15, 35, 65 … ms past the lease), so a slow vote round still gets time to finish.
const RETRY_STEP: Duration = Duration::from_millis(10);
/// Tries before the election timers are left to decide.
const TRIES: u32 = 6;
/// Wait between attempts to reach a peer that is down or not yet greeting.
const RETRY: Duration = Duration::from_millis(200);

/// When this node last heard from a leader (AppendEntries, or a snapshot chunk).
pub(crate) type LastHeard = AtomicInstant;

/// The running detector: the listener and the watchers; stopped when dropped.
pub(crate) struct Liveness {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Liveness {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Timings the trigger follows (the cluster's Raft config).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// openraft's leader lease is `election_timeout_max`.
    pub lease: Duration,
    /// Stagger between followers' elections.
    pub stagger: Duration,
}

impl Liveness {
    /// Listens on TCP at `addr` (the node's QUIC address) and watches the peers. A port
    /// that cannot be bound only costs the fast path: a warning, and the timers decide.
    pub(crate) async fn start(
        raft: Raft,
        endpoint: Arc<QuicEndpoint>,
        node_id: u64,
        heard: Arc<LastHeard>,
        timing: Timing,
    ) -> Liveness {
        let mut tasks = Vec::new();
        let bound = match endpoint.local_addr().ok() {
            Some(addr) => TcpListener::bind(addr).await.map_err(|e| format!("{addr}: {e}")),
            None => Err("no QUIC address".to_string()),
        };
        match bound {
            Ok(listener) => tasks.push(tokio::spawn(serve(listener, node_id))),
            Err(e) => {
                warn!(error = %e, "liveness listener not started: failover waits for election timeouts")
            }
        }
        tasks.push(tokio::spawn(watch(raft, endpoint, node_id, heard, timing)));
        Liveness { tasks }
    }
}

/// Greets every connection and holds it open until the peer goes (or this node stops).
async fn serve(listener: TcpListener, node_id: u64) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut held = JoinSet::new();
    let mut hello = HELLO.to_vec();
    hello.extend_from_slice(&node_id.to_be_bytes());
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("goim_liveness_refused_total").increment(1);
            continue;
        };
        let hello = hello.clone();
        held.spawn(async move {
            let _slot = slot;
            if stream.write_all(&hello).await.is_err() {
                return;
            }
            // Peers never send: anything read is garbage, and ends the connection.
            let mut byte = [0u8; 1];
            if let Ok(n) = stream.read(&mut byte).await {
                if n > 0 {
                    metrics::counter!("goim_liveness_garbage_total").increment(1);
                }
            }
        });
        while held.try_join_next().is_some() {}
    }
}

/// Keeps one watcher per peer voter (following membership) and acts on their reports.
async fn watch(raft: Raft, endpoint: Arc<QuicEndpoint>, node_id: u64, heard: Arc<LastHeard>, timing: Timing) {
    let (died_tx, mut died) = mpsc::channel::<u64>(16);
    let mut watchers: BTreeMap<u64, (String, JoinHandle<()>)> = BTreeMap::new();
    let mut metrics = raft.metrics();
    loop {
        let peers: BTreeMap<u64, String> = {
            let m = metrics.borrow_and_update();
            let membership = m.membership_config.membership();
            membership
                .voter_ids()
                .filter(|id| *id != node_id)
                .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
                .collect()
        };
        watchers.retain(|id, (addr, task)| {
            let keep = peers.get(id) == Some(addr);
            if !keep {
                task.abort();
            }
            keep
        });
        for (id, addr) in peers {
            watchers.entry(id).or_insert_with(|| {
                let task = tokio::spawn(watch_peer(id, addr.clone(), endpoint.clone(), died_tx.clone()));
                (addr, task)
            });
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { break },
            Some(dead) = died.recv() => on_death(&raft, node_id, dead, &heard, timing).await,
        }
    }
    for (_, (_, task)) in watchers {
        task.abort();
    }
}

/// Connects to `peer` and reports each time a greeted connection ends; the cached QUIC
/// connection to the dead process is dropped at once.
async fn watch_peer(peer: u64, addr: String, endpoint: Arc<QuicEndpoint>, died: mpsc::Sender<u64>) {
    loop {
        if let Ok(Ok(mut stream)) = tokio::time::timeout(RETRY * 5, TcpStream::connect(&addr)).await {
            if greeted_by(&mut stream, peer).await {
                let mut byte = [0u8; 1];
                // The peer never writes after its greeting: a return is its end.
                let _ = stream.read(&mut byte).await;
                endpoint.forget(&addr);
                if died.send(peer).await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// True when `stream` greets as node `peer` within a second.
async fn greeted_by(stream: &mut TcpStream, peer: u64) -> bool {
    let mut hello = [0u8; HELLO.len() + 8];
    match tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut hello)).await {
        Ok(Ok(_)) => hello[..HELLO.len()] == HELLO[..] && hello[HELLO.len()..] == peer.to_be_bytes(),
        _ => false,
    }
}

/// Node `dead`'s process is gone. If it was our leader, elect as soon as the other
/// followers will vote: just past their lease on it (this node's rank among the rest
/// later), and again while no leader has come up, in case their lease ran a little longer.
async fn on_death(raft: &Raft, node_id: u64, dead: u64, heard: &LastHeard, timing: Timing) {
    let leader_was = |raft: &Raft| {
        let m = raft.metrics();
        let m = m.borrow();
        m.current_leader == Some(dead) && m.state.is_follower()
    };
    if !leader_was(raft) {
        return;
    }
    let rank = {
        let m = raft.metrics();
        let m = m.borrow();
        let others: Vec<u64> =
            m.membership_config.membership().voter_ids().filter(|id| *id != dead).collect();
        others.iter().position(|id| *id == node_id)
    };
    let Some(rank) = rank else { return };
    let mut at =
        (heard.load() + timing.lease + LEASE_MARGIN).max(Instant::now()) + timing.stagger * rank as u32;
    tokio::time::sleep_until(at).await;
    if !leader_was(raft) {
        return;
    }
    info!(dead, rank, "leader's process is gone: starting an election");
    for tries in 1..=TRIES {
        metrics::counter!("goim_liveness_elections_total").increment(1);
        if let Err(e) = raft.trigger().elect().await {
            warn!(error = %e, "could not start an election");
            return;
        }
        at += RETRY_STEP * tries;
        tokio::time::sleep_until(at).await;
        if !leaderless(raft, dead) {
            return;
        }
    }
}

/// True while no live leader is known: none, or still the dead one.
fn leaderless(raft: &Raft, dead: u64) -> bool {
    let m = raft.metrics();
    let m = m.borrow();
    m.current_leader.is_none() || m.current_leader == Some(dead)
}
