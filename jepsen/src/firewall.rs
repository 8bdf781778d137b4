//! Link faults between the simulated hosts: per directed link (from → to) a cut, a random
//! loss or a delay, applied with one nftables table (`inet jepsen`) in every host's namespace
//! plus the delaying `proxy` for slow links, and the partition shapes the nemesis picks from.
//!
//! Drops are done on the *receiver's* input, keyed on the sender's host address: the sender's
//! `sendmsg` still succeeds, as on a real lossy wire (an output-side drop would fail it with
//! EPERM, which quinn treats as a fatal socket error). Only peer host addresses are matched,
//! so the harness (the gateway address) always reaches every node.
//!
//! Each change re-renders the whole table of the hosts it concerns and replaces it in one
//! `nft -f` transaction, so the rules always equal the link model.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rand::seq::SliceRandom;
use rand::Rng;

use crate::hosts::{run_with_stdin, Host, Network};
use crate::proxy::Proxy;

/// The UDP port goim nodes speak QUIC on (both ends); the only traffic `slow` delays.
pub const CLUSTER_PORT: u16 = 3119;

/// The faults on one directed link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkFault {
    /// Every packet dropped.
    pub cut: bool,
    /// Percent of packets dropped at random (0 = none).
    pub loss: u8,
    /// Cluster traffic held for `delay_ms ± jitter_ms` (uniform), via the proxy.
    pub slow: Option<(u64, u64)>,
}

impl LinkFault {
    fn is_none(&self) -> bool {
        !self.cut && self.loss == 0 && self.slow.is_none()
    }
}

#[derive(Default)]
struct State {
    links: BTreeMap<(String, String), LinkFault>,
    /// Pairs routed through the proxy, as (smaller name, larger name).
    proxied: BTreeSet<(String, String)>,
    /// The table last loaded into each host, to skip hosts a change does not concern.
    applied: HashMap<String, String>,
}

/// The link model of one `Network` and the rules that enforce it.
pub struct Firewall {
    hosts: Vec<Host>,
    cluster_port: u16,
    proxy: Proxy,
    state: Mutex<State>,
}

impl std::fmt::Debug for Firewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firewall").field("faults", &self.describe()).finish_non_exhaustive()
    }
}

fn pair_key(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl Firewall {
    /// Loads an empty `inet jepsen` table into every host of `net`.
    pub fn new(net: &Network) -> Result<Firewall> {
        Firewall::with_port(net, CLUSTER_PORT)
    }

    /// Like `new`, for nodes whose cluster (QUIC) port is not 3119.
    pub fn with_port(net: &Network, cluster_port: u16) -> Result<Firewall> {
        let fw = Firewall {
            hosts: net.hosts.clone(),
            cluster_port,
            proxy: Proxy::new(net.gateway, cluster_port),
            state: Mutex::new(State::default()),
        };
        {
            let mut st = fw.lock()?;
            fw.apply(&mut st)?;
        }
        Ok(fw)
    }

    #[cfg(test)]
    /// The proxy behind `slow` (its counters are useful in tests and reports).
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| anyhow!("firewall state poisoned"))
    }

    fn host(&self, name: &str) -> Result<&Host> {
        self.hosts.iter().find(|h| h.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
            anyhow!("no host {name:?} (hosts: {})", known.join(", "))
        })
    }

    fn link(&self, from: &str, to: &str) -> Result<(String, String)> {
        self.host(from)?;
        self.host(to)?;
        if from == to {
            bail!("a link needs two different hosts, got {from} -> {to}");
        }
        Ok((from.to_string(), to.to_string()))
    }

    #[cfg(test)]
    /// Drop every packet from `from` to `to` (one-way). Bidirectional partitions = two calls.
    pub fn cut(&self, from: &str, to: &str) -> Result<()> {
        self.cut_links(&[(from.to_string(), to.to_string())])
    }

    /// Cuts every listed (from, to) link at once (e.g. a `PartitionShape`'s links): one
    /// table replacement per host concerned instead of one per link.
    pub fn cut_links(&self, links: &[(String, String)]) -> Result<()> {
        let keys = links.iter().map(|(f, t)| self.link(f, t)).collect::<Result<Vec<_>>>()?;
        let mut st = self.lock()?;
        for key in keys {
            st.links.entry(key).or_default().cut = true;
        }
        self.apply(&mut st)
    }

    /// Random loss of `percent` of the packets from → to (0 removes it, 100 drops all).
    pub fn loss(&self, from: &str, to: &str, percent: u8) -> Result<()> {
        if percent > 100 {
            bail!("loss of {percent}% is not a percentage");
        }
        let key = self.link(from, to)?;
        let mut st = self.lock()?;
        st.links.entry(key).or_default().loss = percent;
        self.apply(&mut st)
    }

    /// Delay (+ uniform jitter) on from → to, through the proxy. Only cluster traffic
    /// (UDP between the two nodes' cluster ports) is delayed; cuts and loss still apply.
    pub async fn slow(&self, from: &str, to: &str, delay_ms: u64, jitter_ms: u64) -> Result<()> {
        let key = self.link(from, to)?;
        let (a, b) = (self.host(from)?.ip, self.host(to)?.ip);
        self.proxy.open_pair(a, b).await?;
        self.proxy.set_delay(a, b, Duration::from_millis(delay_ms), Duration::from_millis(jitter_ms))?;
        // The proxy forwards before the rules divert anything to it.
        self.proxy.set_active(a, b, true)?;
        let mut st = self.lock()?;
        st.links.entry(key).or_default().slow = Some((delay_ms, jitter_ms));
        st.proxied.insert(pair_key(from, to));
        self.apply(&mut st)
    }

    /// Removes every fault (cuts, loss, slow links), restoring the full mesh. The proxy
    /// stops first (dropping what it holds), so nothing reaches a node from the proxy's
    /// address once the diversion rules are gone.
    pub async fn heal(&self) -> Result<()> {
        self.proxy.reset();
        let mut st = self.lock()?;
        st.links.clear();
        st.proxied.clear();
        self.apply(&mut st)
    }

    /// The current faults, one directed link each, sorted.
    pub fn faults(&self) -> Vec<(String, String, LinkFault)> {
        match self.state.lock() {
            Ok(st) => st
                .links
                .iter()
                .filter(|(_, f)| !f.is_none())
                .map(|((a, b), f)| (a.clone(), b.clone(), *f))
                .collect(),
            Err(_) => vec![],
        }
    }

    /// Human-readable description of the current faults (for the history).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .faults()
            .into_iter()
            .map(|(from, to, f)| {
                let mut what = Vec::new();
                if f.cut {
                    what.push("cut".to_string());
                }
                if f.loss > 0 {
                    what.push(format!("loss {}%", f.loss));
                }
                if let Some((d, j)) = f.slow {
                    what.push(if j > 0 { format!("slow {d}±{j}ms") } else { format!("slow {d}ms") });
                }
                format!("{from}->{to} {}", what.join(" "))
            })
            .collect();
        if parts.is_empty() {
            "no faults (full mesh)".to_string()
        } else {
            parts.join("; ")
        }
    }

    /// Loads the rendered table into every host whose table changed. Tries every host and
    /// reports the first failure.
    fn apply(&self, st: &mut State) -> Result<()> {
        let mut first_err = None;
        for host in &self.hosts {
            let table = self.render(st, host)?;
            if st.applied.get(&host.name) == Some(&table) {
                continue;
            }
            let argv = ["ip", "netns", "exec", host.ns.as_str(), "nft", "-f", "-"];
            match run_with_stdin(&argv, Some(&table)) {
                Ok(_) => {
                    st.applied.insert(host.name.clone(), table);
                }
                Err(e) => {
                    st.applied.remove(&host.name);
                    first_err.get_or_insert(e.context(format!("loading nftables rules into {}", host.name)));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The complete `inet jepsen` table of `host`, as an atomic replace script.
    fn render(&self, st: &State, host: &Host) -> Result<String> {
        let mut input = String::new();
        for ((from, to), f) in &st.links {
            if *to != host.name {
                continue;
            }
            let src = self.host(from)?.ip;
            if f.cut {
                let _ = writeln!(input, "    ip saddr {src} drop");
            } else if f.loss > 0 {
                let _ = writeln!(input, "    ip saddr {src} numgen random mod 100 < {} drop", f.loss);
            }
        }
        let (mut divert_out, mut divert_in) = (String::new(), String::new());
        let gw = self.proxy.gateway();
        let port = self.cluster_port;
        for (a, b) in &st.proxied {
            let peer = match (a == &host.name, b == &host.name) {
                (true, _) => b,
                (_, true) => a,
                _ => continue,
            };
            let peer_ip = self.host(peer)?.ip;
            let (via, _) = self
                .proxy
                .ports(host.ip, peer_ip)
                .ok_or_else(|| anyhow!("proxy pair {}-{peer} not opened", host.name))?;
            let _ = writeln!(
                divert_out,
                "    ip daddr {peer_ip} udp sport {port} udp dport {port} ip daddr set {gw} udp dport set {via}"
            );
            let _ = writeln!(
                divert_in,
                "    ip saddr {gw} udp sport {via} udp dport {port} ip saddr set {peer_ip} udp sport set {port}"
            );
        }
        // Order: prerouting (-300) restores the true sender before input (0) filters on it;
        // output drops nothing, the diversion runs at route priority so the rewritten
        // destination is routed again.
        Ok(format!(
            "table inet jepsen {{}}\n\
             delete table inet jepsen\n\
             table inet jepsen {{\n\
             \x20 chain input {{\n    type filter hook input priority 0; policy accept;\n{input}  }}\n\
             \x20 chain divert_in {{\n    type filter hook prerouting priority -300; policy accept;\n{divert_in}  }}\n\
             \x20 chain divert_out {{\n    type route hook output priority 10; policy accept;\n{divert_out}  }}\n\
             }}\n"
        ))
    }
}

/// The shape of a partition: which links the nemesis cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionShape {
    /// Two halves (the smaller first when odd) that cannot talk to each other.
    Halves,
    /// One node cut off from all others.
    IsolateOne,
    /// Two halves joined by one node that still sees both.
    Bridge,
    /// Every node sees a majority, no two nodes the same one (Jepsen's majorities-ring).
    MajoritiesRing,
    /// A random group cannot send to the rest, which can still send to it.
    RandomOneWay,
}

impl PartitionShape {
    pub const ALL: [PartitionShape; 5] = [
        PartitionShape::Halves,
        PartitionShape::IsolateOne,
        PartitionShape::Bridge,
        PartitionShape::MajoritiesRing,
        PartitionShape::RandomOneWay,
    ];

    /// The (from, to) links to cut for `nodes`. With a `leader` (one of `nodes`), it is put
    /// where the shape hurts most: in the minority (halves), the isolated node
    /// (isolate-one), a half rather than the bridge (bridge), among the nodes that cannot
    /// send (random-one-way); the majorities ring ignores it. Everything else is random.
    pub fn links(&self, nodes: &[String], leader: Option<&str>, rng: &mut impl Rng) -> Vec<(String, String)> {
        let slot = match self {
            PartitionShape::Halves | PartitionShape::IsolateOne | PartitionShape::RandomOneWay => 0,
            PartitionShape::Bridge => 1,
            PartitionShape::MajoritiesRing => usize::MAX,
        };
        let mut order = shuffled(nodes, rng);
        if let Some(pos) = leader.and_then(|l| order.iter().position(|n| n == l)) {
            if slot < order.len() {
                order.swap(pos, slot);
            }
        }
        match self {
            PartitionShape::Halves => halves(&order),
            PartitionShape::IsolateOne => isolate_first(&order),
            PartitionShape::Bridge => bridge(&order),
            PartitionShape::MajoritiesRing => majorities_ring(&order),
            PartitionShape::RandomOneWay => one_way(&order, rng),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            PartitionShape::Halves => "halves",
            PartitionShape::IsolateOne => "isolate-one",
            PartitionShape::Bridge => "bridge",
            PartitionShape::MajoritiesRing => "majorities-ring",
            PartitionShape::RandomOneWay => "random-one-way",
        }
    }
}

/// Both directions of every link between different groups.
fn between(groups: &[Vec<String>]) -> Vec<(String, String)> {
    let mut links = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        for (j, h) in groups.iter().enumerate() {
            if i != j {
                for a in g {
                    for b in h {
                        links.push((a.clone(), b.clone()));
                    }
                }
            }
        }
    }
    links.sort();
    links
}

fn shuffled(nodes: &[String], rng: &mut impl Rng) -> Vec<String> {
    let mut v = nodes.to_vec();
    v.shuffle(rng);
    v
}

#[cfg(test)]
/// A random minority (⌊n/2⌋ nodes) and the majority cut off from each other, both ways.
pub fn partition_halves(nodes: &[String], rng: &mut impl Rng) -> Vec<(String, String)> {
    halves(&shuffled(nodes, rng))
}

#[cfg(test)]
/// One random node cut off from every other, both ways.
pub fn partition_isolate_one(nodes: &[String], rng: &mut impl Rng) -> Vec<(String, String)> {
    isolate_first(&shuffled(nodes, rng))
}

#[cfg(test)]
/// Two halves cut off from each other, both ways, and one node (the bridge) that keeps
/// talking to both. Needs 3 nodes; with fewer it is `partition_halves`.
pub fn partition_bridge(nodes: &[String], rng: &mut impl Rng) -> Vec<(String, String)> {
    bridge(&shuffled(nodes, rng))
}

#[cfg(test)]
/// Jepsen's majorities ring: the nodes in a random ring, each node hears only from the
/// majority-sized window of the ring centred on it, so every node sees a majority and no
/// two see the same one. With an even majority size the window is off-centre and some cuts
/// are one-way (e.g. 3 nodes). Needs 3 nodes; with fewer it is `partition_halves`.
pub fn partition_majorities_ring(nodes: &[String], rng: &mut impl Rng) -> Vec<(String, String)> {
    majorities_ring(&shuffled(nodes, rng))
}

#[cfg(test)]
/// A random non-empty group that cannot send to the other (non-empty) nodes, while the
/// others still reach it.
pub fn partition_random_one_way(nodes: &[String], rng: &mut impl Rng) -> Vec<(String, String)> {
    let order = shuffled(nodes, rng);
    one_way(&order, rng)
}

// The shapes over an already shuffled order; the first positions are the "targets".

/// The first ⌊n/2⌋ against the rest.
fn halves(order: &[String]) -> Vec<(String, String)> {
    if order.len() < 2 {
        return vec![];
    }
    let (minority, majority) = order.split_at(order.len() / 2);
    between(&[minority.to_vec(), majority.to_vec()])
}

/// The first node against the rest.
fn isolate_first(order: &[String]) -> Vec<(String, String)> {
    if order.len() < 2 {
        return vec![];
    }
    let (one, rest) = order.split_at(1);
    between(&[one.to_vec(), rest.to_vec()])
}

/// The first node is the bridge; the rest split in two halves.
fn bridge(order: &[String]) -> Vec<(String, String)> {
    if order.len() < 3 {
        return halves(order);
    }
    let rest = &order[1..];
    let (left, right) = rest.split_at(rest.len() / 2);
    between(&[left.to_vec(), right.to_vec()])
}

/// The ring in `order`: each node hears only the majority window centred on it.
fn majorities_ring(ring: &[String]) -> Vec<(String, String)> {
    let n = ring.len();
    if n < 3 {
        return halves(ring);
    }
    let m = n / 2 + 1;
    let mut links = Vec::new();
    for start in 0..n {
        let window: Vec<&String> = (0..m).map(|k| &ring[(start + k) % n]).collect();
        let centre = window[m / 2];
        for other in ring {
            if !window.contains(&other) {
                links.push((other.clone(), centre.clone()));
            }
        }
    }
    links.sort();
    links
}

/// The first k (random, 1..n) nodes cannot send to the others.
fn one_way(order: &[String], rng: &mut impl Rng) -> Vec<(String, String)> {
    if order.len() < 2 {
        return vec![];
    }
    let k = rng.random_range(1..order.len());
    let (senders, receivers) = order.split_at(k);
    let mut links: Vec<(String, String)> =
        senders.iter().flat_map(|a| receivers.iter().map(move |b| (a.clone(), b.clone()))).collect();
    links.sort();
    links
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::root_or_skip;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::BTreeSet;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    /// Who `node` still hears from (itself included).
    fn hears(nodes: &[String], cuts: &[(String, String)], node: &str) -> BTreeSet<String> {
        nodes.iter().filter(|f| !cuts.contains(&((*f).clone(), node.to_string()))).cloned().collect()
    }

    fn symmetric(cuts: &[(String, String)]) -> bool {
        cuts.iter().all(|(a, b)| cuts.contains(&(b.clone(), a.clone())))
    }

    #[test]
    fn halves_split_minority_from_majority() {
        for n in 2..=7 {
            for seed in 0..20 {
                let nodes = names(n);
                let cuts = partition_halves(&nodes, &mut StdRng::seed_from_u64(seed));
                assert!(symmetric(&cuts));
                // Exactly two components with sizes ⌊n/2⌋ and ⌈n/2⌉, all cross links cut.
                let mut sizes: Vec<usize> = nodes.iter().map(|x| hears(&nodes, &cuts, x).len()).collect();
                sizes.sort();
                assert_eq!(sizes.first(), Some(&(n / 2)));
                assert_eq!(sizes.last(), Some(&(n - n / 2)));
                assert_eq!(cuts.len(), 2 * (n / 2) * (n - n / 2));
            }
        }
        assert!(partition_halves(&names(1), &mut StdRng::seed_from_u64(0)).is_empty());
    }

    #[test]
    fn isolate_one_cuts_a_single_node_both_ways() {
        let nodes = names(5);
        let mut picked = BTreeSet::new();
        for seed in 0..40 {
            let cuts = partition_isolate_one(&nodes, &mut StdRng::seed_from_u64(seed));
            assert!(symmetric(&cuts));
            assert_eq!(cuts.len(), 8);
            let lonely: Vec<&String> = nodes.iter().filter(|x| hears(&nodes, &cuts, x).len() == 1).collect();
            assert_eq!(lonely.len(), 1);
            picked.insert(lonely[0].clone());
        }
        assert!(picked.len() > 1, "the isolated node is random");
    }

    #[test]
    fn bridge_keeps_one_node_talking_to_both_halves() {
        for n in 3..=7 {
            for seed in 0..20 {
                let nodes = names(n);
                let cuts = partition_bridge(&nodes, &mut StdRng::seed_from_u64(seed));
                assert!(symmetric(&cuts));
                let bridges: Vec<&String> =
                    nodes.iter().filter(|x| cuts.iter().all(|(a, b)| a != *x && b != *x)).collect();
                assert_eq!(bridges.len(), 1, "n={n} cuts={cuts:?}");
                // Without the bridge node, the rest splits into two non-empty halves.
                let others: Vec<&String> = nodes.iter().filter(|x| *x != bridges[0]).collect();
                let first = hears(&nodes, &cuts, others[0]);
                assert!(first.len() < n && first.len() >= 2);
                // Both halves hear the bridge, and nobody hears a node of the other half.
                for x in &others {
                    assert!(hears(&nodes, &cuts, x).contains(bridges[0]));
                }
            }
        }
    }

    #[test]
    fn majorities_ring_gives_every_node_its_own_majority() {
        for n in 3..=9 {
            for seed in 0..20 {
                let nodes = names(n);
                let cuts = partition_majorities_ring(&nodes, &mut StdRng::seed_from_u64(seed));
                let majority = n / 2 + 1;
                let views: Vec<BTreeSet<String>> = nodes.iter().map(|x| hears(&nodes, &cuts, x)).collect();
                for (x, view) in nodes.iter().zip(&views) {
                    assert_eq!(view.len(), majority, "n={n} {x} hears {view:?}");
                    assert!(view.contains(x));
                }
                let distinct: BTreeSet<&BTreeSet<String>> = views.iter().collect();
                assert_eq!(distinct.len(), n, "n={n}: two nodes see the same majority");
            }
        }
        // With 5 nodes the ring is symmetric: each node hears its two ring neighbours.
        assert!(symmetric(&partition_majorities_ring(&names(5), &mut StdRng::seed_from_u64(3))));
    }

    #[test]
    fn random_one_way_never_cuts_the_way_back() {
        let mut sizes = BTreeSet::new();
        for seed in 0..40 {
            let nodes = names(5);
            let cuts = partition_random_one_way(&nodes, &mut StdRng::seed_from_u64(seed));
            assert!(!cuts.is_empty());
            for (a, b) in &cuts {
                assert!(!cuts.contains(&(b.clone(), a.clone())), "{a}<->{b} cut both ways");
            }
            let senders: BTreeSet<&String> = cuts.iter().map(|(a, _)| a).collect();
            let receivers: BTreeSet<&String> = cuts.iter().map(|(_, b)| b).collect();
            assert_eq!(cuts.len(), senders.len() * receivers.len(), "a complete one-way cut");
            assert_eq!(senders.len() + receivers.len(), 5);
            sizes.insert(senders.len());
        }
        assert!(sizes.len() > 1);
    }

    #[test]
    fn shapes_dispatch_and_are_deterministic_per_seed() {
        let nodes = names(5);
        for shape in PartitionShape::ALL {
            let a = shape.links(&nodes, None, &mut StdRng::seed_from_u64(7));
            let b = shape.links(&nodes, None, &mut StdRng::seed_from_u64(7));
            assert_eq!(a, b, "{}", shape.name());
            assert!(!a.is_empty(), "{}", shape.name());
        }
        // Without a leader, `links` is the shape's own function.
        assert_eq!(
            PartitionShape::Halves.links(&nodes, None, &mut StdRng::seed_from_u64(9)),
            partition_halves(&nodes, &mut StdRng::seed_from_u64(9))
        );
    }

    #[test]
    fn a_leader_is_put_where_the_shape_hurts() {
        let nodes = names(5);
        for seed in 0..30 {
            for leader in &nodes {
                let rng = &mut StdRng::seed_from_u64(seed);
                let cuts = PartitionShape::Halves.links(&nodes, Some(leader), rng);
                assert_eq!(hears(&nodes, &cuts, leader).len(), 2, "leader in the minority");

                let cuts = PartitionShape::IsolateOne.links(&nodes, Some(leader), rng);
                assert_eq!(hears(&nodes, &cuts, leader).len(), 1, "the leader is isolated");

                let cuts = PartitionShape::Bridge.links(&nodes, Some(leader), rng);
                assert!(cuts.iter().any(|(a, _)| a == leader), "the leader is not the bridge");

                let cuts = PartitionShape::RandomOneWay.links(&nodes, Some(leader), rng);
                assert!(cuts.iter().any(|(a, _)| a == leader), "the leader cannot send");
                assert!(cuts.iter().all(|(_, b)| b != leader), "but still hears everyone");

                let cuts = PartitionShape::MajoritiesRing.links(&nodes, Some(leader), rng);
                assert_eq!(hears(&nodes, &cuts, leader).len(), 3);
            }
        }
        // A leader that is not among the nodes changes nothing.
        let rng = &mut StdRng::seed_from_u64(1);
        assert!(!PartitionShape::Halves.links(&nodes, Some("n9"), rng).is_empty());
    }

    // ---- integration tests: need root, ip and nft ----

    fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn full_mesh(net: &Network) -> BTreeSet<(String, String)> {
        let mut names = vec![crate::hosts::GATEWAY.to_string()];
        names.extend(net.hosts.iter().map(|h| h.name.clone()));
        names
            .iter()
            .flat_map(|a| names.iter().map(move |b| (a.clone(), b.clone())))
            .filter(|(a, b)| a != b)
            .collect()
    }

    #[tokio::test]
    async fn cut_is_one_way_and_heal_restores_the_mesh() {
        if !root_or_skip() {
            return;
        }
        let net = Network::create("fcut", 211, &["n1", "n2", "n3"]).expect("network");
        let fw = Firewall::new(&net).expect("firewall");
        assert_eq!(fw.describe(), "no faults (full mesh)");
        let wait = Duration::from_millis(500);

        fw.cut("n1", "n2").expect("cut");
        assert_eq!(fw.describe(), "n1->n2 cut");
        let seen = net.udp_reachability(wait).expect("probe");
        let expected: BTreeSet<_> = full_mesh(&net).difference(&pairs(&[("n1", "n2")])).cloned().collect();
        assert_eq!(seen, expected, "only n1->n2 is gone; n2->n1 and the gateway are untouched");

        // A bidirectional partition of n3, as a batch.
        let iso = between(&[vec!["n3".to_string()], vec!["n1".to_string(), "n2".to_string()]]);
        fw.cut_links(&iso).expect("cut links");
        let seen = net.udp_reachability(wait).expect("probe");
        let gone = pairs(&[("n1", "n2"), ("n1", "n3"), ("n3", "n1"), ("n2", "n3"), ("n3", "n2")]);
        assert_eq!(seen, full_mesh(&net).difference(&gone).cloned().collect());
        assert!(seen.contains(&("gw".to_string(), "n3".to_string())), "the harness still reaches n3");
        assert!(seen.contains(&("n3".to_string(), "gw".to_string())));

        assert!(fw.cut("n1", "n1").is_err());
        assert!(fw.cut("n1", "n9").is_err());

        fw.heal().await.expect("heal");
        assert_eq!(fw.describe(), "no faults (full mesh)");
        assert_eq!(net.udp_reachability(wait).expect("probe"), full_mesh(&net));
        drop(fw);
        net.teardown();
    }

    #[tokio::test]
    async fn loss_drops_about_the_given_share() {
        if !root_or_skip() {
            return;
        }
        let net = Network::create("floss", 212, &["n1", "n2"]).expect("network");
        let fw = Firewall::new(&net).expect("firewall");
        fw.loss("n1", "n2", 50).expect("loss");
        assert_eq!(fw.describe(), "n1->n2 loss 50%");
        assert!(fw.loss("n1", "n2", 101).is_err());

        let count = |from: &str, to: &str| -> usize {
            let tx = net.bind_udp(from, 0).expect("bind");
            let rx = net.bind_udp(to, 0).expect("bind");
            let dest = rx.local_addr().expect("addr");
            // The receiver drains while the sender sends, so no socket buffer overflows.
            rx.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
            let reader = std::thread::spawn(move || {
                let mut got = 0;
                let mut buf = [0u8; 16];
                while rx.recv_from(&mut buf).is_ok() {
                    got += 1;
                }
                got
            });
            for i in 0..200u32 {
                tx.send_to(&i.to_be_bytes(), dest).expect("send never fails: drops are on input");
                if i % 20 == 19 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            reader.join().expect("reader")
        };
        let lossy = count("n1", "n2");
        let clean = count("n2", "n1");
        eprintln!("loss 50%: {lossy}/200 delivered n1->n2, {clean}/200 n2->n1");
        assert!((60..=140).contains(&lossy), "{lossy} of 200 delivered at 50% loss");
        assert_eq!(clean, 200, "the other direction is lossless");

        fw.heal().await.expect("heal");
        assert_eq!(count("n1", "n2"), 200);
        drop(fw);
        net.teardown();
    }

    #[tokio::test]
    async fn rules_match_the_model_and_are_replaced_atomically() {
        if !root_or_skip() {
            return;
        }
        let net = Network::create("frules", 213, &["n1", "n2"]).expect("network");
        let fw = Firewall::new(&net).expect("firewall");
        fw.cut("n1", "n2").expect("cut");
        fw.loss("n2", "n1", 30).expect("loss");
        let list = |h: &str| {
            let mut argv = net.exec_prefix(h);
            argv.extend(["nft", "list", "table", "inet", "jepsen"].map(String::from));
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            crate::hosts::run(&argv).expect("nft list")
        };
        let n2 = list("n2");
        assert!(n2.contains("ip saddr 10.77.213.10 drop"), "{n2}");
        let n1 = list("n1");
        assert!(n1.contains("ip saddr 10.77.213.11 numgen random mod 100 < 30 drop"), "{n1}");
        // Loss on a cut link: the cut wins; dropping the cut leaves the loss.
        fw.loss("n1", "n2", 10).expect("loss");
        assert!(list("n2").contains("ip saddr 10.77.213.10 drop"));
        assert_eq!(fw.describe(), "n1->n2 cut loss 10%; n2->n1 loss 30%");
        fw.heal().await.expect("heal");
        assert!(!list("n1").contains("drop") && !list("n2").contains("drop"));
        drop(fw);
        net.teardown();
    }
}
