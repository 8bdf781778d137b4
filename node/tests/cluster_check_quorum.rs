//! Check-quorum (raft/src/check_quorum.rs): a leader cut off from a majority but still
//! reaching one voter keeps that voter's lease on it alive with its heartbeats, and openraft
//! 0.9 lets no other candidate win while a lease runs. Four real logic voters (as during a
//! membership change, when jepsen found this) on their own loopback addresses; nftables
//! drops the traffic between the leader and two of them. The leader then reaches only the
//! "bridge" voter (2 of 4, no quorum), and the other two reach each other and the bridge:
//! they can make a majority only with the bridge. The stranded leader must go quiet, a
//! leader must be elected among the other three, and a push must commit while the cut
//! holds. And a star: five voters cut so that each reaches only one of them, the centre
//! (the old leader is one of the others, and stranded); the centre, the one voter that
//! reaches a majority, must be elected and a push commit while the cut holds. Needs root
//! (nftables); CI has it.
mod common;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use common::cluster::{exclusive, first_commit, Cluster};
use common::counter;

const TABLE: &str = "goim_check_quorum_test";

/// The nftables table holding the cuts; removed when dropped.
struct Cuts;

impl Cuts {
    fn new(pairs: &[(Ipv4Addr, Ipv4Addr)]) -> Cuts {
        let mut script = format!(
            "table ip {TABLE} {{\n chain out {{\n  type filter hook output priority 0; policy accept;\n"
        );
        for (a, b) in pairs {
            script.push_str(&format!("  ip saddr {a} ip daddr {b} drop\n  ip saddr {b} ip daddr {a} drop\n"));
        }
        script.push_str(" }\n}\n");
        let _ = Command::new("nft").args(["delete", "table", "ip", TABLE]).output();
        assert!(nft_script(&script), "nft -f refused:\n{script}");
        Cuts
    }
}

impl Drop for Cuts {
    fn drop(&mut self) {
        let _ = Command::new("nft").args(["delete", "table", "ip", TABLE]).output();
    }
}

/// Loads `script` with `nft -f -`; whether nft took it.
fn nft_script(script: &str) -> bool {
    use std::io::Write;
    let Ok(mut child) = Command::new("nft").args(["-f", "-"]).stdin(std::process::Stdio::piped()).spawn()
    else {
        return false;
    };
    let written = child.stdin.take().is_some_and(|mut stdin| stdin.write_all(script.as_bytes()).is_ok());
    child.wait().is_ok_and(|s| s.success()) && written
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

fn have_nft() -> bool {
    Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// `voters` real logic voters, with this test's turn at nftables; `None` (the test is
/// skipped) without root or nftables, which CI must have.
async fn cluster_with_nft(voters: usize) -> Option<(tokio::sync::MutexGuard<'static, ()>, Cluster)> {
    if !is_root() || !have_nft() {
        assert!(std::env::var_os("CI").is_none(), "CI must run this as root with nftables");
        eprintln!("skipped: needs root and nftables");
        return None;
    }
    let one = exclusive().await;
    Some((one, Cluster::start(voters, 0, 0).await))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranded_leader_steps_aside_so_the_voters_it_cannot_reach_elect_another() {
    let Some((_one, c)) = cluster_with_nft(4).await else { return };
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let bridge = (leader + 1) % 4;
    let others: Vec<usize> = (0..4).filter(|i| *i != leader && *i != bridge).collect();
    let ip = |i: usize| c.logic[i].ip;
    let pairs: Vec<(Ipv4Addr, Ipv4Addr)> = others.iter().map(|o| (ip(leader), ip(*o))).collect();
    eprintln!(
        "leader {}, bridge {}: cutting the leader from {:?}",
        c.logic[leader].name,
        c.logic[bridge].name,
        others.iter().map(|o| c.logic[*o].name.as_str()).collect::<Vec<_>>()
    );
    let cuts = Cuts::new(&pairs);

    // Pushes go to the bridge, which forwards them to whoever it follows. Until the
    // stranded leader steps aside, none can commit.
    let took = first_commit(&c.logic[bridge].url(), "cq", Duration::from_secs(40)).await;
    let new_leader = c.leader().await;
    let stranded =
        counter(&c.metrics(&c.logic[leader]).await.unwrap_or_default(), "goim_raft_stranded_leader_total");
    drop(cuts);
    let Some(took) = took else {
        panic!(
            "no push committed in 40 s while the leader was stranded (leader now {new_leader:?}); \
         the old leader's log ends:\n{}",
            c.logic[leader].log_tail(30)
        );
    };
    assert!(stranded >= 1.0, "the old leader counted no stranded spell");
    assert_ne!(new_leader, Some(leader), "the stranded node still leads");
    eprintln!("a push committed {took:?} after the cut, new leader {new_leader:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_star_partition_elects_its_centre() {
    let Some((_one, c)) = cluster_with_nft(5).await else { return };
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    // The centre is a follower: the leader, one of the leaves, reaches only it and is
    // stranded; every other leaf reaches only the centre too.
    let centre = (leader + 1) % 5;
    let leaves: Vec<usize> = (0..5).filter(|i| *i != centre).collect();
    let ip = |i: usize| c.logic[i].ip;
    let mut pairs = Vec::new();
    for (n, a) in leaves.iter().enumerate() {
        for b in &leaves[n + 1..] {
            pairs.push((ip(*a), ip(*b)));
        }
    }
    eprintln!(
        "leader {}, centre {}: cutting the leaves from each other",
        c.logic[leader].name, c.logic[centre].name
    );
    let cuts = Cuts::new(&pairs);
    let took = first_commit(&c.logic[centre].url(), "star", Duration::from_secs(40)).await;
    let new_leader = c.leader().await;
    drop(cuts);
    let Some(took) = took else {
        panic!(
            "no push committed in 40 s of a star partition (leader now {new_leader:?}); the centre's log ends:\n{}",
            c.logic[centre].log_tail(30)
        );
    };
    assert_eq!(new_leader, Some(centre), "the centre is the only voter that reaches a majority");
    eprintln!("a push committed {took:?} after the cut");
}
