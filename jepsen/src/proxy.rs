//! The `slow` fault. This kernel has no netem qdisc, so delay and jitter are added in user
//! space: cluster traffic (UDP, port 3119 on both ends) between two hosts is diverted through
//! this proxy in the harness, which holds each datagram for `delay ± jitter` and sends it on.
//!
//! The diversion is stateless address rewriting, done by the firewall's nftables rules in the
//! two hosts' namespaces (no conntrack, no NAT table). For a proxied pair {a, b}, the proxy has
//! one UDP socket per direction on the gateway, `S(a→b)` at `gw:P(a→b)` and `S(b→a)`:
//!
//! * in a: datagrams `a:3119 → b:3119` are rewritten on output to `a:3119 → gw:P(a→b)`;
//!   replies `gw:P(a→b) → a:3119` are rewritten on prerouting to `b:3119 → a:3119`;
//! * in b: the same with `P(b→a)`;
//! * the proxy forwards what `S(a→b)` receives from `a:3119` out of `S(b→a)` to `b:3119`, so b
//!   sees it coming from `gw:P(b→a)`, which b's rule turns back into `a:3119`.
//!
//! Both nodes therefore keep seeing each other at their real `ip:3119`: QUIC sees no address
//! change at all (a NAT design would make the peer appear at the proxy's address, which a
//! quinn *client* does not accept from its server). Because the firewall's drop rules run
//! before the output rewrite and after the input rewrite, cuts and loss keep applying to
//! proxied traffic in the namespaces, so the proxy itself only delays.
//!
//! Deactivating a pair (heal) drops what is queued and whatever still arrives, so no datagram
//! is delivered once the rewrite rules are gone (it would reach a node from `gw:P`).
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Datagrams held at once per direction; beyond that arrivals are dropped (a full queue).
const MAX_QUEUED: usize = 100_000;

/// Counters of one proxied direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg(test)]
pub struct LinkStats {
    /// Datagrams delivered to the destination.
    pub forwarded: u64,
    /// Datagrams dropped: pair inactive (healed), queue full, or from an unexpected sender.
    pub dropped: u64,
}

/// One direction x→y of a pair: its socket's port and its delay.
#[derive(Debug)]
struct Direction {
    from: Ipv4Addr,
    to: Ipv4Addr,
    port: u16,
    delay_us: AtomicU64,
    jitter_us: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

impl Direction {
    fn hold_for(&self) -> Duration {
        let delay = self.delay_us.load(Ordering::Relaxed);
        let jitter = self.jitter_us.load(Ordering::Relaxed);
        let us = if jitter == 0 {
            delay
        } else {
            rand::rng().random_range(delay.saturating_sub(jitter)..=delay.saturating_add(jitter))
        };
        Duration::from_micros(us)
    }
}

/// A proxied pair {a, b}: both directions, and whether it forwards at all.
#[derive(Debug)]
struct Pair {
    active: AtomicBool,
    /// Bumped on each activation: datagrams queued under an older one are dropped.
    generation: AtomicU64,
    dirs: [Arc<Direction>; 2],
}

impl Pair {
    fn dir(&self, from: Ipv4Addr, to: Ipv4Addr) -> Option<&Arc<Direction>> {
        self.dirs.iter().find(|d| d.from == from && d.to == to)
    }
}

struct Inner {
    gateway: Ipv4Addr,
    cluster_port: u16,
    pairs: Mutex<HashMap<(Ipv4Addr, Ipv4Addr), Arc<Pair>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.get_mut() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

/// The delaying proxy. Cheap to clone; its tasks stop when the last clone is dropped.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("gateway", &self.inner.gateway)
            .field("cluster_port", &self.inner.cluster_port)
            .finish_non_exhaustive()
    }
}

fn key(a: Ipv4Addr, b: Ipv4Addr) -> (Ipv4Addr, Ipv4Addr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl Proxy {
    /// A proxy listening on `gateway` (an address of the harness's namespace that every host
    /// reaches) for traffic between hosts' `cluster_port`s. Opens nothing yet.
    pub fn new(gateway: Ipv4Addr, cluster_port: u16) -> Proxy {
        Proxy {
            inner: Arc::new(Inner {
                gateway,
                cluster_port,
                pairs: Mutex::new(HashMap::new()),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.inner.gateway
    }

    /// Opens the two sockets of pair {a, b} (once; later calls return the same ports) and
    /// starts forwarding between them. Must run inside a tokio runtime, in the namespace
    /// that owns the gateway address. Returns `(P(a→b), P(b→a))`. The pair starts inactive.
    pub async fn open_pair(&self, a: Ipv4Addr, b: Ipv4Addr) -> Result<(u16, u16)> {
        if a == b {
            return Err(anyhow!("cannot proxy {a} to itself"));
        }
        if let Some(ports) = self.ports(a, b) {
            return Ok(ports);
        }
        let gw = self.inner.gateway;
        let bind = || -> Result<Arc<UdpSocket>> {
            let std = std::net::UdpSocket::bind((gw, 0))
                .with_context(|| format!("binding proxy socket on {gw}"))?;
            std.set_nonblocking(true)?;
            Ok(Arc::new(UdpSocket::from_std(std)?))
        };
        let (sock_ab, sock_ba) = (bind()?, bind()?);
        let dir = |from, to, sock: &UdpSocket| -> Result<Arc<Direction>> {
            Ok(Arc::new(Direction {
                from,
                to,
                port: sock.local_addr()?.port(),
                delay_us: AtomicU64::new(0),
                jitter_us: AtomicU64::new(0),
                forwarded: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }))
        };
        let (ab, ba) = (dir(a, b, &sock_ab)?, dir(b, a, &sock_ba)?);
        let pair = Arc::new(Pair {
            active: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            dirs: [ab.clone(), ba.clone()],
        });
        {
            let mut pairs = self.inner.pairs.lock().map_err(|_| anyhow!("proxy state poisoned"))?;
            if let Some(existing) = pairs.get(&key(a, b)) {
                // Lost a race with a concurrent open: keep the first one.
                let ports = (existing.dir(a, b), existing.dir(b, a));
                if let (Some(x), Some(y)) = ports {
                    return Ok((x.port, y.port));
                }
            }
            pairs.insert(key(a, b), pair.clone());
        }
        let port = self.inner.cluster_port;
        let mut handles = Vec::new();
        for (dir, inbound, outbound) in
            [(ab.clone(), sock_ab.clone(), sock_ba.clone()), (ba, sock_ba, sock_ab)]
        {
            let (tx, rx) = mpsc::channel(4096);
            handles.push(tokio::spawn(receive(pair.clone(), dir.clone(), inbound, port, tx)));
            handles.push(tokio::spawn(deliver(pair.clone(), dir, outbound, port, rx)));
        }
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            tasks.extend(handles);
        }
        Ok((ab.port, pair.dirs[1].port))
    }

    /// The ports `(P(a→b), P(b→a))` of an opened pair.
    pub fn ports(&self, a: Ipv4Addr, b: Ipv4Addr) -> Option<(u16, u16)> {
        let pair = self.pair(a, b)?;
        Some((pair.dir(a, b)?.port, pair.dir(b, a)?.port))
    }

    fn pair(&self, a: Ipv4Addr, b: Ipv4Addr) -> Option<Arc<Pair>> {
        self.inner.pairs.lock().ok()?.get(&key(a, b)).cloned()
    }

    /// Sets how long datagrams from → to are held: `delay ± jitter`, uniform. The pair must
    /// have been opened.
    pub fn set_delay(&self, from: Ipv4Addr, to: Ipv4Addr, delay: Duration, jitter: Duration) -> Result<()> {
        let pair = self.pair(from, to).ok_or_else(|| anyhow!("proxy pair {from}-{to} not opened"))?;
        let dir =
            pair.dir(from, to).ok_or_else(|| anyhow!("proxy pair {from}-{to} has no such direction"))?;
        dir.delay_us.store(delay.as_micros().try_into().unwrap_or(u64::MAX), Ordering::Relaxed);
        dir.jitter_us.store(jitter.as_micros().try_into().unwrap_or(u64::MAX), Ordering::Relaxed);
        Ok(())
    }

    /// Starts or stops forwarding for pair {a, b}. Stopping drops everything queued and
    /// everything that arrives until the next start; starting resets nothing else.
    pub fn set_active(&self, a: Ipv4Addr, b: Ipv4Addr, active: bool) -> Result<()> {
        let pair = self.pair(a, b).ok_or_else(|| anyhow!("proxy pair {a}-{b} not opened"))?;
        if active && !pair.active.load(Ordering::SeqCst) {
            pair.generation.fetch_add(1, Ordering::SeqCst);
        }
        pair.active.store(active, Ordering::SeqCst);
        Ok(())
    }

    /// Stops every pair and zeroes every delay (heal). Sockets stay open for reuse.
    pub fn reset(&self) {
        let pairs: Vec<Arc<Pair>> = match self.inner.pairs.lock() {
            Ok(p) => p.values().cloned().collect(),
            Err(_) => return,
        };
        for pair in pairs {
            pair.active.store(false, Ordering::SeqCst);
            for d in &pair.dirs {
                d.delay_us.store(0, Ordering::Relaxed);
                d.jitter_us.store(0, Ordering::Relaxed);
            }
        }
    }

    #[cfg(test)]
    /// Counters of direction from → to, if that pair was opened.
    pub fn stats(&self, from: Ipv4Addr, to: Ipv4Addr) -> Option<LinkStats> {
        let pair = self.pair(from, to)?;
        let d = pair.dir(from, to)?;
        Some(LinkStats {
            forwarded: d.forwarded.load(Ordering::Relaxed),
            dropped: d.dropped.load(Ordering::Relaxed),
        })
    }
}

/// One datagram waiting in a delay line.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    due: Instant,
    seq: u64,
    generation: u64,
    data: Bytes,
}

/// Reads what `dir.from` sends to the proxy and queues it with its release time.
async fn receive(
    pair: Arc<Pair>,
    dir: Arc<Direction>,
    sock: Arc<UdpSocket>,
    cluster_port: u16,
    tx: mpsc::Sender<Held>,
) {
    let expected = SocketAddr::from((dir.from, cluster_port));
    let mut buf = vec![0u8; 65_536];
    let mut seq = 0u64;
    loop {
        let (n, src) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(_) => {
                // Transient (e.g. an ICMP error surfaced on the socket): keep serving.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if src != expected || !pair.active.load(Ordering::SeqCst) {
            dir.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        seq += 1;
        let held = Held {
            due: Instant::now() + dir.hold_for(),
            seq,
            generation: pair.generation.load(Ordering::SeqCst),
            data: Bytes::copy_from_slice(&buf[..n]),
        };
        match tx.send(held).await {
            Ok(()) => {}
            Err(_) => return,
        }
    }
}

/// Releases held datagrams when due, out of the socket of the opposite direction, so the
/// receiver's rewrite rule restores the true sender.
async fn deliver(
    pair: Arc<Pair>,
    dir: Arc<Direction>,
    out: Arc<UdpSocket>,
    cluster_port: u16,
    mut rx: mpsc::Receiver<Held>,
) {
    let dest = SocketAddr::from((dir.to, cluster_port));
    let mut heap: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    loop {
        let next = heap.peek().map(|Reverse(h)| h.due);
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Some(held) if heap.len() < MAX_QUEUED => heap.push(Reverse(held)),
                Some(_) => { dir.dropped.fetch_add(1, Ordering::Relaxed); }
                None => return,
            },
            _ = sleep_until(next), if next.is_some() => {
                let now = Instant::now();
                while heap.peek().is_some_and(|Reverse(h)| h.due <= now) {
                    let Some(Reverse(held)) = heap.pop() else { break };
                    let live = pair.active.load(Ordering::SeqCst)
                        && held.generation == pair.generation.load(Ordering::SeqCst);
                    if live && out.send_to(&held.data, dest).await.is_ok() {
                        dir.forwarded.fetch_add(1, Ordering::Relaxed);
                    } else {
                        dir.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{Firewall, CLUSTER_PORT};
    use crate::hosts::{root_or_skip, Network};
    use std::pin::Pin;
    use std::time::Instant as StdInstant;

    fn tokio_udp(net: &Network, host: &str, port: u16) -> UdpSocket {
        let std = net.bind_udp(host, port).expect("bind");
        std.set_nonblocking(true).expect("nonblocking");
        UdpSocket::from_std(std).expect("tokio socket")
    }

    /// An echo server on `host:port` that answers with the sender's address as it saw it.
    fn echo_server(net: &Network, host: &str, port: u16) -> JoinHandle<()> {
        let sock = tokio_udp(net, host, port);
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, src)) = sock.recv_from(&mut buf).await {
                let reply = format!("{}|{src}", String::from_utf8_lossy(&buf[..n]));
                let _ = sock.send_to(reply.as_bytes(), src).await;
            }
        })
    }

    /// One round trip: (elapsed, who answered, how the server saw us), or None on timeout.
    async fn round_trip(
        sock: &UdpSocket,
        dest: SocketAddr,
        tag: &str,
    ) -> Option<(Duration, SocketAddr, String)> {
        let start = StdInstant::now();
        sock.send_to(tag.as_bytes(), dest).await.ok()?;
        let mut buf = [0u8; 1500];
        loop {
            let (n, from) =
                tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await.ok()?.ok()?;
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if let Some((echoed, seen_as)) = text.split_once('|') {
                if echoed == tag {
                    return Some((start.elapsed(), from, seen_as.to_string()));
                }
            }
        }
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_link_delays_cluster_udp_transparently() {
        if !root_or_skip() {
            return;
        }
        let net = Network::create("pslow", 221, &["n1", "n2"]).expect("network");
        let fw = Firewall::new(&net).expect("firewall");
        let (n1, n2) = (net.require("n1").expect("n1").ip, net.require("n2").expect("n2").ip);
        let server = echo_server(&net, "n2", CLUSTER_PORT);
        let other_server = echo_server(&net, "n2", 4000);
        let client = tokio_udp(&net, "n1", CLUSTER_PORT);
        let other_client = tokio_udp(&net, "n1", 0);
        let dest = SocketAddr::from((n2, CLUSTER_PORT));

        let (base, _, _) = round_trip(&client, dest, "base").await.expect("direct echo");
        eprintln!("direct rtt {:.2} ms", ms(base));
        assert!(base < Duration::from_millis(50));

        fw.slow("n1", "n2", 200, 0).await.expect("slow");
        assert_eq!(fw.describe(), "n1->n2 slow 200ms");
        let (rtt, from, seen_as) = round_trip(&client, dest, "slow1").await.expect("echo through proxy");
        eprintln!("rtt with n1->n2 slowed 200 ms: {:.2} ms", ms(rtt));
        assert!(rtt >= Duration::from_millis(200) && rtt < Duration::from_millis(350), "{rtt:?}");
        // Both ends see each other's true cluster address: the proxy is invisible.
        assert_eq!(from, dest);
        assert_eq!(seen_as, SocketAddr::from((n1, CLUSTER_PORT)).to_string());
        // Traffic that is not cluster-port to cluster-port is not diverted.
        let (rtt, _, _) =
            round_trip(&other_client, SocketAddr::from((n2, 4000)), "other").await.expect("other echo");
        assert!(rtt < Duration::from_millis(50), "{rtt:?}");

        fw.slow("n2", "n1", 100, 0).await.expect("slow back");
        let (rtt, _, _) = round_trip(&client, dest, "slow2").await.expect("echo");
        eprintln!("rtt with 200 ms there and 100 ms back: {:.2} ms", ms(rtt));
        assert!(rtt >= Duration::from_millis(300) && rtt < Duration::from_millis(450), "{rtt:?}");

        fw.slow("n1", "n2", 100, 50).await.expect("jitter");
        let mut rtts = Vec::new();
        for i in 0..12 {
            let (rtt, _, _) = round_trip(&client, dest, &format!("j{i}")).await.expect("echo");
            rtts.push(rtt);
        }
        let (lo, hi) =
            (rtts.iter().min().copied().unwrap_or_default(), rtts.iter().max().copied().unwrap_or_default());
        eprintln!("rtt with 100±50 ms there and 100 ms back: {:.1}..{:.1} ms", ms(lo), ms(hi));
        assert!(lo >= Duration::from_millis(150) && hi < Duration::from_millis(350), "{lo:?}..{hi:?}");
        assert!(hi - lo > Duration::from_millis(10), "jitter varies the delay: {lo:?}..{hi:?}");

        let stats = fw.proxy().stats(n1, n2).expect("stats");
        assert!(stats.forwarded >= 14, "{stats:?}");

        fw.heal().await.expect("heal");
        assert_eq!(fw.describe(), "no faults (full mesh)");
        let (rtt, from, _) = round_trip(&client, dest, "healed").await.expect("echo after heal");
        eprintln!("rtt after heal: {:.2} ms", ms(rtt));
        assert!(rtt < Duration::from_millis(50));
        assert_eq!(from, dest);
        let before = fw.proxy().stats(n1, n2).expect("stats");
        round_trip(&client, dest, "healed2").await.expect("echo");
        assert_eq!(fw.proxy().stats(n1, n2), Some(before), "healed traffic bypasses the proxy");

        // Slowing again reuses the pair.
        fw.slow("n1", "n2", 50, 0).await.expect("slow again");
        let (rtt, _, _) = round_trip(&client, dest, "again").await.expect("echo");
        assert!(rtt >= Duration::from_millis(50), "{rtt:?}");
        fw.heal().await.expect("heal");

        server.abort();
        other_server.abort();
        drop(fw);
        net.teardown();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cuts_and_loss_apply_to_slowed_links() {
        if !root_or_skip() {
            return;
        }
        let net = Network::create("pcut", 222, &["n1", "n2"]).expect("network");
        let fw = Firewall::new(&net).expect("firewall");
        let n2 = net.require("n2").expect("n2").ip;
        let server = echo_server(&net, "n2", CLUSTER_PORT);
        let client = tokio_udp(&net, "n1", CLUSTER_PORT);
        let dest = SocketAddr::from((n2, CLUSTER_PORT));

        fw.slow("n1", "n2", 20, 0).await.expect("slow");
        fw.cut("n2", "n1").expect("cut the way back");
        assert!(round_trip(&client, dest, "cut").await.is_none(), "the reply is cut");
        assert_eq!(fw.describe(), "n1->n2 slow 20ms; n2->n1 cut");
        fw.heal().await.expect("heal");

        fw.slow("n1", "n2", 20, 0).await.expect("slow");
        fw.loss("n1", "n2", 50).expect("loss");
        let mut answered = 0;
        for i in 0..40 {
            let tag = format!("l{i}");
            client.send_to(tag.as_bytes(), dest).await.expect("send");
        }
        let mut buf = [0u8; 1500];
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(500), client.recv_from(&mut buf)).await
        {
            answered += 1;
        }
        eprintln!("slowed + 50% loss: {answered}/40 answered");
        assert!((6..=34).contains(&answered), "{answered} of 40 at 50% loss");
        fw.heal().await.expect("heal");

        server.abort();
        drop(fw);
        net.teardown();
    }

    /// An echo service for goim's own QUIC endpoint.
    struct Echo;

    impl goim_net::quic::StreamHandler for Echo {
        fn handle(
            self: Arc<Self>,
            stream: goim_net::quic::BiStream,
        ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
            Box::pin(goim_net::quic::serve_unary::<String, String, _, _>(
                stream,
                "echo",
                |req| async move { req },
            ))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quic_connections_survive_slowing_and_healing() {
        use goim_net::quic::{ClusterTls, QuicEndpoint};
        use goim_net::rpc::Service;
        if !root_or_skip() {
            return;
        }
        let net = Network::create("pquic", 223, &["n1", "n2"]).expect("network");
        let fw = Firewall::new(&net).expect("firewall");
        let handle = tokio::runtime::Handle::current();
        let endpoint = |name: &str| {
            let ip = net.require(name).expect("host").ip;
            let handle = handle.clone();
            net.in_host(name, move || {
                let _rt = handle.enter();
                let tls = ClusterTls::generate().expect("tls");
                QuicEndpoint::bind(SocketAddr::from((ip, CLUSTER_PORT)), &tls).expect("bind")
            })
            .expect("in host")
        };
        let (e1, e2) = (endpoint("n1"), endpoint("n2"));
        e1.register(Service::Logic, Arc::new(Echo));
        e2.register(Service::Logic, Arc::new(Echo));
        let (a1, a2) = ("10.77.223.10:3119", "10.77.223.11:3119");
        let call = |from: Arc<QuicEndpoint>, to: &'static str, msg: &'static str| async move {
            let start = StdInstant::now();
            let reply: String = from
                .call(to, Service::Logic, &msg.to_string(), Duration::from_secs(5))
                .await
                .unwrap_or_else(|e| panic!("call {msg}: {e}"));
            assert_eq!(reply, msg);
            start.elapsed()
        };
        // Connections in both directions (n1 dials n2, n2 dials n1) on the same 4-tuple.
        let direct = call(e1.clone(), a2, "warm12").await;
        call(e2.clone(), a1, "warm21").await;
        let direct = direct.min(call(e1.clone(), a2, "direct").await);

        fw.slow("n1", "n2", 100, 0).await.expect("slow");
        fw.slow("n2", "n1", 100, 0).await.expect("slow");
        let slow12 = call(e1.clone(), a2, "slow12").await;
        let slow21 = call(e2.clone(), a1, "slow21").await;
        eprintln!(
            "QUIC echo: direct {:.1} ms, with 100 ms each way n1->n2 {:.1} ms, n2->n1 {:.1} ms",
            ms(direct),
            ms(slow12),
            ms(slow21)
        );
        assert!(slow12 >= Duration::from_millis(200) && slow12 < Duration::from_millis(600), "{slow12:?}");
        assert!(slow21 >= Duration::from_millis(200) && slow21 < Duration::from_millis(600), "{slow21:?}");
        // Keep-alives (1 s) go through the proxy for a while without breaking anything.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(call(e1.clone(), a2, "still").await >= Duration::from_millis(200));

        fw.heal().await.expect("heal");
        let healed12 = call(e1.clone(), a2, "healed12").await;
        let healed21 = call(e2.clone(), a1, "healed21").await;
        eprintln!("QUIC echo after heal: {:.1} ms / {:.1} ms", ms(healed12), ms(healed21));
        assert!(healed12 < Duration::from_millis(100) && healed21 < Duration::from_millis(100));

        e1.shutdown().await;
        e2.shutdown().await;
        drop(fw);
        net.teardown();
    }
}
