//! Check-quorum, which openraft 0.9 lacks: a leader that no quorum has acknowledged for a
//! while steps aside. Without it a leader cut off from a majority but still reaching one
//! voter keeps that voter's lease on it alive with its heartbeats; the voter then refuses
//! every other candidate, so no side of the partition can elect a leader until it heals
//! (jepsen seed 203, a `bridge` partition, 7.6 s without a commit; seed 124, a ring, 10.1 s).
//! openraft has no call that makes a leader a follower, so a stranded leader goes quiet
//! instead: it sends no AppendEntries (nor snapshot chunks) for a while, the voters it
//! reaches let their lease on it lapse and elect a leader that reaches a quorum, and when
//! it speaks again their answers carry the higher vote, which makes it a follower.
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, RaftMetrics, ServerState};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::warn;

use crate::atomic_instant::AtomicInstant;
use crate::types::Raft;

type Metrics = RaftMetrics<u64, BasicNode>;

/// Until when this node, as leader, sends nothing to its followers. Shared by the watcher
/// and the Raft network.
#[derive(Debug)]
pub struct Quiet {
    until: AtomicInstant,
}

impl Quiet {
    pub fn new() -> Arc<Quiet> {
        Arc::new(Quiet { until: AtomicInstant::new() })
    }

    /// Whether replication is held back now.
    pub fn is_quiet(&self) -> bool {
        Instant::now() < self.until.load()
    }

    fn hush(&self, for_: Duration) {
        self.until.store(Instant::now() + for_);
    }
}

/// How long a leader goes unacknowledged before it steps aside, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// No quorum acknowledged the leader for longer than this: it is stranded. Twice the
    /// lease, so heartbeats lost or late for a few rounds do not count.
    pub stranded: Duration,
    /// How long it keeps quiet: past the lease of the voters it reaches, and long enough
    /// for one of them, or a candidate they now vote for, to win an election.
    pub quiet: Duration,
    /// How long a leader that stepped aside does not stand for election itself, unless it
    /// learns of a new leader sooner: it reaches no majority, and each vote it asked for
    /// would be one a candidate that can win does not get (openraft 0.9 has no pre-vote).
    pub no_campaign: Duration,
}

impl Timing {
    /// From openraft's leader lease (`election_timeout_max`).
    pub(crate) fn from_lease(lease: Duration) -> Timing {
        Timing { stranded: lease * 2, quiet: lease * 3, no_campaign: lease * 15 }
    }
}

/// How often the leader's metrics are looked at.
const POLL: Duration = Duration::from_millis(50);

/// Whether `m` is a leader of more than one voter that no quorum has acknowledged for
/// longer than `stranded`; `led_for` (how long it has led in this term) stands for the
/// time since a quorum ack while none has come yet.
fn is_stranded(m: &Metrics, stranded: Duration, led_for: Duration) -> bool {
    m.state == ServerState::Leader
        && m.membership_config.membership().voter_ids().nth(1).is_some()
        && m.millis_since_quorum_ack.map_or(led_for, Duration::from_millis) > stranded
}

/// The running watcher; stopped when dropped.
pub(crate) struct CheckQuorum(JoinHandle<()>);

impl Drop for CheckQuorum {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches this node's Raft; a stranded leader goes quiet for `timing.quiet`, and is given
/// `timing.stranded` of speaking after it before it can go quiet again.
pub(crate) fn watch(raft: Raft, quiet: Arc<Quiet>, timing: Timing) -> CheckQuorum {
    CheckQuorum(tokio::spawn(async move {
        let mut metrics = raft.metrics();
        let mut next_allowed = Instant::now();
        // While set, this node's own election timer starts no campaign.
        let mut no_campaign_until: Option<Instant> = None;
        // The term this node leads in, and since when it has seen itself lead it.
        let mut leading: Option<(u64, Instant)> = None;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let stranded = {
                let m = metrics.borrow_and_update();
                // Standing again once another leader is known, or when the hold runs out.
                if let Some(until) = no_campaign_until {
                    let other_leads = m.current_leader.is_some_and(|l| l != m.id);
                    if other_leads || Instant::now() >= until {
                        raft.runtime_config().elect(true);
                        no_campaign_until = None;
                    }
                }
                leading = match leading {
                    Some((term, at)) if m.state == ServerState::Leader && term == m.current_term => {
                        Some((term, at))
                    }
                    _ if m.state == ServerState::Leader => Some((m.current_term, Instant::now())),
                    _ => None,
                };
                let led_for = leading.map_or(Duration::ZERO, |(_, at)| at.elapsed());
                (Instant::now() >= next_allowed && is_stranded(&m, timing.stranded, led_for))
                    .then(|| (m.current_term, m.millis_since_quorum_ack))
            };
            if let Some((term, since_ack)) = stranded {
                warn!(
                    term,
                    since_quorum_ack_ms = since_ack,
                    quiet_ms = timing.quiet.as_millis() as u64,
                    "leader not acknowledged by a quorum: keeping quiet so a leader that reaches one can be elected"
                );
                metrics::counter!("goim_raft_stranded_leader_total").increment(1);
                quiet.hush(timing.quiet);
                // Once deposed it would stand again at once, reaching the same minority, and
                // take the votes of the voters it reaches from candidates that can win.
                raft.runtime_config().elect(false);
                no_campaign_until = Some(Instant::now() + timing.no_campaign);
                next_allowed = Instant::now() + timing.quiet + timing.stranded;
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{Membership, StoredMembership};

    use super::*;

    fn metrics(state: ServerState, voters: &[u64], since_ack: Option<u64>) -> Metrics {
        let nodes: BTreeMap<u64, BasicNode> = voters.iter().map(|id| (*id, BasicNode::default())).collect();
        let membership = Membership::new(vec![voters.iter().copied().collect::<BTreeSet<u64>>()], nodes);
        let mut m = Metrics::new_initial(voters[0]);
        m.state = state;
        m.membership_config = Arc::new(StoredMembership::new(None, membership));
        m.millis_since_quorum_ack = since_ack;
        m
    }

    #[test]
    fn only_a_leader_of_several_voters_unacknowledged_past_the_bound_is_stranded() {
        let bound = Duration::from_millis(800);
        let led = Duration::from_secs(60);
        assert!(is_stranded(&metrics(ServerState::Leader, &[1, 2, 3], Some(801)), bound, led));
        assert!(
            !is_stranded(&metrics(ServerState::Leader, &[1, 2, 3], Some(800)), bound, led),
            "at the bound"
        );
        assert!(!is_stranded(&metrics(ServerState::Leader, &[1, 2, 3], Some(10)), bound, led));
        let never_acked = metrics(ServerState::Leader, &[1, 2, 3], None);
        assert!(is_stranded(&never_acked, bound, led), "never acked for a minute of leading");
        assert!(!is_stranded(&never_acked, bound, Duration::from_millis(100)), "just elected");
        assert!(!is_stranded(&metrics(ServerState::Follower, &[1, 2, 3], Some(5_000)), bound, led));
        assert!(!is_stranded(&metrics(ServerState::Candidate, &[1, 2, 3], Some(5_000)), bound, led));
        assert!(!is_stranded(&metrics(ServerState::Leader, &[1], Some(5_000)), bound, led), "a lone voter");
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_lasts_as_long_as_it_was_told() {
        let q = Quiet::new();
        assert!(!q.is_quiet());
        q.hush(Duration::from_millis(1_200));
        assert!(q.is_quiet());
        tokio::time::advance(Duration::from_millis(1_199)).await;
        assert!(q.is_quiet());
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(!q.is_quiet());
    }

    #[test]
    fn the_timing_follows_the_lease() {
        let t = Timing::from_lease(Duration::from_millis(400));
        assert_eq!(
            (t.stranded, t.quiet, t.no_campaign),
            (Duration::from_millis(800), Duration::from_millis(1_200), Duration::from_secs(6))
        );
    }
}
