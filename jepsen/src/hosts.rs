//! The simulated machines: one Linux bridge in the root namespace and one network namespace
//! per host (`n1`, `c1`, …), each joined to the bridge by a veth pair, so every `goim`
//! process of a test runs on its own IP and the nemesis can cut, drop and delay the links
//! between them (see `firewall`) while the harness, sitting on the bridge's gateway address,
//! always reaches every host.
//!
//! Addresses: `10.77.<subnet>.0/24`, the bridge (gateway) `.1`, hosts `.10` upwards. Nothing
//! routes out of that subnet (hosts get no default route), so no test traffic can leave the
//! machine. Names: bridge `gj<tag>`, root-side veth ends `gj<tag>v<i>`, namespaces
//! `gj-<tag>-<host>`; a marker `/run/goim-jepsen/<tag>.pid` names the owning process so
//! `cleanup_stale` only removes what a dead run left behind.
use std::collections::BTreeSet;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// Prefix of every namespace this module creates.
const NS_PREFIX: &str = "gj-";
/// Prefix of every bridge and veth this module creates.
const LINK_PREFIX: &str = "gj";
/// Where the owner markers live (tmpfs, gone after a reboot like the namespaces).
const MARKER_DIR: &str = "/run/goim-jepsen";
/// Longest tag: `gj` + tag + `v` + three digits must fit IFNAMSIZ-1 = 15.
const MAX_TAG: usize = 9;
/// First host address in the subnet.
const FIRST_HOST: u8 = 10;
/// The name `udp_reachability` gives the root namespace (the harness, on the gateway).
pub const GATEWAY: &str = "gw";

/// One simulated machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Short name, e.g. "n1", "c1", "j1".
    pub name: String,
    /// Its network namespace (`ip netns` name).
    pub ns: String,
    /// Its address on the bridge.
    pub ip: Ipv4Addr,
}

/// A bridge and its hosts. Dropping it tears everything down.
#[derive(Debug)]
pub struct Network {
    pub tag: String,
    pub bridge: String,
    /// The bridge's address in the root namespace: the harness's address as the hosts see it.
    pub gateway: Ipv4Addr,
    pub hosts: Vec<Host>,
    torn_down: AtomicBool,
}

impl Network {
    /// Creates the bridge, one namespace per name with a veth enslaved to the bridge, the
    /// addresses (gateway `.1`, hosts `.10` up) and `lo` up everywhere. `tag`: 1–9 of
    /// `[a-z0-9]`; `names`: distinct, non-empty `[a-z0-9]` names. On error everything
    /// created so far is removed again.
    pub fn create(tag: &str, subnet: u8, names: &[&str]) -> Result<Network> {
        validate(tag, names)?;
        require_root().map_err(|e| anyhow!(e))?;
        let prefix = format!("10.77.{subnet}.0/24");
        let in_use = run(&["ip", "-o", "-4", "addr", "show", "to", &prefix])?;
        if !in_use.trim().is_empty() {
            bail!("subnet {prefix} is already in use here: {}", in_use.trim());
        }
        let bridge = format!("{LINK_PREFIX}{tag}");
        if link_exists(&bridge) {
            bail!("bridge {bridge} already exists (another run with tag {tag:?}, or call cleanup_stale)");
        }
        let hosts: Vec<Host> = names
            .iter()
            .enumerate()
            .map(|(i, name)| Host {
                name: name.to_string(),
                ns: format!("{NS_PREFIX}{tag}-{name}"),
                ip: Ipv4Addr::new(10, 77, subnet, FIRST_HOST + i as u8),
            })
            .collect();
        // Checked before `net` exists: its teardown must never delete what it did not create.
        for host in &hosts {
            if ns_exists(&host.ns) {
                bail!("namespace {} already exists (call cleanup_stale)", host.ns);
            }
        }
        let net = Network {
            tag: tag.to_string(),
            bridge,
            gateway: Ipv4Addr::new(10, 77, subnet, 1),
            hosts,
            torn_down: AtomicBool::new(false),
        };
        write_marker(tag)?;
        // From here on, `net` going out of scope (an error) tears the partial network down.
        net.build().with_context(|| format!("creating network {tag:?}"))?;
        Ok(net)
    }

    fn build(&self) -> Result<()> {
        let br = self.bridge.as_str();
        run(&["ip", "link", "add", "name", br, "type", "bridge"])?;
        // Bridged frames must not be run through the root namespace's iptables/nftables
        // (br_netfilter): a host firewall's FORWARD policy would otherwise drop traffic
        // between our hosts. This per-bridge switch only helps when the global sysctl
        // `net.bridge.bridge-nf-call-iptables` is 0; see `bridge_netfilter_warning`.
        let _ = run(&[
            "ip",
            "link",
            "set",
            br,
            "type",
            "bridge",
            "nf_call_iptables",
            "0",
            "nf_call_ip6tables",
            "0",
            "nf_call_arptables",
            "0",
        ]);
        if let Some(warning) = bridge_netfilter_warning() {
            eprintln!("goim-jepsen: warning: {warning}");
        }
        disable_ipv6(br);
        let gw = format!("{}/24", self.gateway);
        run(&["ip", "addr", "add", &gw, "dev", br])?;
        run(&["ip", "link", "set", br, "up"])?;
        for (i, host) in self.hosts.iter().enumerate() {
            let outer = self.veth_root(i);
            let inner = format!("{LINK_PREFIX}{}h{i}", self.tag);
            let ns = host.ns.as_str();
            run(&["ip", "netns", "add", ns])?;
            run(&["ip", "link", "add", "name", &outer, "type", "veth", "peer", "name", &inner])?;
            disable_ipv6(&outer);
            run(&["ip", "link", "set", &inner, "netns", ns])?;
            run(&["ip", "-n", ns, "link", "set", &inner, "name", "eth0"])?;
            let _ = in_netns(ns, || disable_ipv6("all"));
            let addr = format!("{}/24", host.ip);
            run(&["ip", "-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
            run(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            run(&["ip", "link", "set", &outer, "master", br])?;
            run(&["ip", "link", "set", &outer, "up"])?;
        }
        Ok(())
    }

    fn veth_root(&self, i: usize) -> String {
        format!("{LINK_PREFIX}{}v{i}", self.tag)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The host called `name`, or an error naming the hosts there are.
    pub fn require(&self, name: &str) -> Result<&Host> {
        self.host(name).ok_or_else(|| {
            let known: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
            anyhow!("no host {name:?} in network {:?} (hosts: {})", self.tag, known.join(", "))
        })
    }

    /// argv prefix that runs a command inside a host: `["ip","netns","exec",ns]`.
    pub fn exec_prefix(&self, name: &str) -> Vec<String> {
        let ns = match self.host(name) {
            Some(h) => h.ns.clone(),
            None => format!("{NS_PREFIX}{}-{name}", self.tag),
        };
        vec!["ip".into(), "netns".into(), "exec".into(), ns]
    }

    /// Runs `f` on a short-lived thread inside host `name`'s namespace: sockets it creates
    /// belong to that host (and keep doing so when handed back to any thread).
    pub fn in_host<T: Send>(&self, name: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
        in_netns(&self.require(name)?.ns, f)
    }

    /// A UDP socket of host `name` bound to its address and `port` (0: any).
    pub fn bind_udp(&self, name: &str, port: u16) -> Result<UdpSocket> {
        let ip = self.require(name)?.ip;
        self.in_host(name, || UdpSocket::bind((ip, port)))?
            .with_context(|| format!("binding UDP {ip}:{port} in host {name}"))
    }

    /// Which directed pairs (from, to) can exchange UDP right now, among the hosts and the
    /// gateway (named `GATEWAY`). Every sender sends three datagrams to every receiver;
    /// a pair counts when at least one arrives within `wait`.
    pub fn udp_reachability(&self, wait: Duration) -> Result<BTreeSet<(String, String)>> {
        let mut sockets = vec![(GATEWAY.to_string(), UdpSocket::bind((self.gateway, 0))?)];
        for h in &self.hosts {
            sockets.push((h.name.clone(), self.bind_udp(&h.name, 0)?));
        }
        let addrs: Vec<SocketAddr> = sockets.iter().map(|(_, s)| s.local_addr()).collect::<Result<_, _>>()?;
        for (from, sock) in &sockets {
            for (to, addr) in sockets.iter().map(|(n, _)| n).zip(&addrs) {
                if from != to {
                    for _ in 0..3 {
                        // A send can fail (e.g. EPERM from an nftables drop): that pair is out.
                        let _ = sock.send_to(format!("{from}>{to}").as_bytes(), addr);
                    }
                }
            }
        }
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 256];
        for (to, sock) in &sockets {
            loop {
                let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
                sock.set_read_timeout(Some(left))?;
                match sock.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        let text = String::from_utf8_lossy(&buf[..n]);
                        if let Some((from, dest)) = text.split_once('>') {
                            if dest == to {
                                seen.insert((from.to_string(), to.clone()));
                            }
                        }
                        let expected = sockets.len() - 1;
                        if seen.iter().filter(|(_, t)| t == to).count() == expected {
                            break;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e).context("receiving reachability probes"),
                }
            }
        }
        Ok(seen)
    }

    /// Checks the full mesh: every host and the gateway reach each other over UDP.
    pub fn self_check(&self) -> Result<()> {
        let seen = self.udp_reachability(Duration::from_secs(2))?;
        let mut names: Vec<&str> = vec![GATEWAY];
        names.extend(self.hosts.iter().map(|h| h.name.as_str()));
        let missing: Vec<String> = names
            .iter()
            .flat_map(|a| names.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a != b && !seen.contains(&(a.to_string(), b.to_string())))
            .map(|(a, b)| format!("{a}->{b}"))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            bail!("network {:?}: no UDP on {}", self.tag, missing.join(", "))
        }
    }

    /// Idempotent, best effort: kills what still runs inside the hosts, deletes the
    /// namespaces (and with them the host ends of the veths and the nftables tables the
    /// firewall put there), the root ends of the veths, the bridge and the owner marker.
    /// Proxy sockets belong to the harness process and close with the `Firewall`.
    pub fn teardown(&self) {
        if self.torn_down.swap(true, Ordering::SeqCst) {
            return;
        }
        for host in &self.hosts {
            remove_ns(&host.ns);
        }
        for i in 0..self.hosts.len() {
            quiet(&["ip", "link", "del", &self.veth_root(i)]);
        }
        quiet(&["ip", "link", "del", &self.bridge]);
        let _ = std::fs::remove_file(marker_path(&self.tag));
    }

    /// Removes what earlier runs left when they crashed: every namespace named `gj-*` and
    /// every bridge/veth named `gj*` whose owning process (marker) is gone. Networks of
    /// live processes, this one included, are left alone, so parallel runs are safe.
    pub fn cleanup_stale() {
        // List first, read the owners' markers after: a marker is written before its
        // network's first link, so whatever was listed and is still being built is live.
        let namespaces = run(&["ip", "netns", "list"]).unwrap_or_default();
        let links: Vec<(&str, String)> = ["veth", "bridge"]
            .into_iter()
            .flat_map(|kind| links_of_kind(kind).into_iter().map(move |n| (kind, n)))
            .collect();
        let live = live_tags();
        for ns in namespaces.lines().filter_map(|l| l.split_whitespace().next()) {
            let Some(rest) = ns.strip_prefix(NS_PREFIX) else { continue };
            let tag = rest.split('-').next().unwrap_or_default();
            if !live.contains(tag) {
                remove_ns(ns);
            }
        }
        for (kind, name) in &links {
            let Some(rest) = name.strip_prefix(LINK_PREFIX) else { continue };
            let tag = if *kind == "veth" { veth_tag(rest) } else { rest };
            if !live.contains(tag) {
                quiet(&["ip", "link", "del", name]);
            }
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Err with a clear message when not root or when `ip`/`nft` are missing.
pub fn require_root() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(format!(
            "network namespaces and nftables need root (running as uid {euid}); run as root"
        ));
    }
    for (tool, arg, package) in [("ip", "-V", "iproute2"), ("nft", "--version", "nftables")] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err(format!("`{tool}` is missing or broken: install {package}"));
        }
    }
    Ok(())
}

/// Runs `f` on a fresh thread that has entered network namespace `ns` (`/run/netns/<ns>`).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> Result<T> {
                // SAFETY: a valid namespace fd; setns only changes this (scoped) thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error()).with_context(|| format!("setns into {ns}"));
                }
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow!("thread inside namespace {ns} panicked"))?
    })
}

/// Runs a command, returning its stdout; an error carries the command and its stderr.
pub(crate) fn run(argv: &[&str]) -> Result<String> {
    run_with_stdin(argv, None)
}

/// Like `run`, feeding `stdin` to the command.
pub(crate) fn run_with_stdin(argv: &[&str], stdin: Option<&str>) -> Result<String> {
    let (prog, args) = argv.split_first().ok_or_else(|| anyhow!("empty command"))?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{}`", argv.join(" ")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).with_context(|| format!("writing to `{}`", argv.join(" ")))?;
    }
    let out = child.wait_with_output().with_context(|| format!("running `{}`", argv.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command ignoring its outcome (teardown).
fn quiet(argv: &[&str]) {
    let _ = run(argv);
}

fn validate(tag: &str, names: &[&str]) -> Result<()> {
    let ok_chars = |s: &str| s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if tag.is_empty() || tag.len() > MAX_TAG || !ok_chars(tag) {
        bail!("network tag {tag:?} must be 1-{MAX_TAG} characters of [a-z0-9]");
    }
    if names.is_empty() || names.len() > usize::from(254 - FIRST_HOST) + 1 {
        bail!("a network needs 1-{} hosts, got {}", 254 - FIRST_HOST + 1, names.len());
    }
    let mut seen = BTreeSet::new();
    for name in names {
        if name.is_empty() || name.len() > 32 || !ok_chars(name) {
            bail!("host name {name:?} must be 1-32 characters of [a-z0-9]");
        }
        if !seen.insert(*name) {
            bail!("host name {name:?} given twice");
        }
    }
    Ok(())
}

/// The tag inside a root-side veth name without its `gj` prefix: `<tag>v<i>` or `<tag>h<i>`.
fn veth_tag(rest: &str) -> &str {
    let no_digits = rest.trim_end_matches(|c: char| c.is_ascii_digit());
    no_digits.strip_suffix('v').or_else(|| no_digits.strip_suffix('h')).unwrap_or(rest)
}

fn link_exists(name: &str) -> bool {
    run(&["ip", "link", "show", "dev", name]).is_ok()
}

fn ns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

fn links_of_kind(kind: &str) -> Vec<String> {
    let Ok(text) = run(&["ip", "-j", "link", "show", "type", kind]) else { return vec![] };
    let Ok(serde_json::Value::Array(links)) = serde_json::from_str::<serde_json::Value>(&text) else {
        return vec![];
    };
    links.iter().filter_map(|l| l.get("ifname")?.as_str().map(str::to_string)).collect()
}

/// Kills the processes still inside `ns` (they were started there by a harness: nodes,
/// clients), never this process, then deletes the namespace.
fn remove_ns(ns: &str) {
    if !ns_exists(ns) {
        return;
    }
    let me = std::process::id();
    if let Ok(pids) = run(&["ip", "netns", "pids", ns]) {
        for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            if pid > 1 && pid as u32 != me {
                // SAFETY: sending a signal to a pid has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    quiet(&["ip", "netns", "del", ns]);
}

fn disable_ipv6(dev: &str) {
    // Less chatter (router solicitations, MLD) on the bridge; best effort.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1");
}

/// A warning when bridged traffic goes through the root namespace's packet filter and that
/// filter has forward chains that may drop it (e.g. a Docker host).
fn bridge_netfilter_warning() -> Option<String> {
    let global = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables").ok()?;
    if global.trim() != "1" {
        return None;
    }
    let ruleset = run(&["nft", "list", "ruleset"]).ok()?;
    ruleset.contains("hook forward").then(|| {
        "net.bridge.bridge-nf-call-iptables=1 and the root namespace filters forwarded packets: \
         traffic between test hosts may be dropped; `sysctl -w net.bridge.bridge-nf-call-iptables=0` \
         fixes it"
            .to_string()
    })
}

fn marker_path(tag: &str) -> String {
    format!("{MARKER_DIR}/{tag}.pid")
}

fn write_marker(tag: &str) -> Result<()> {
    std::fs::create_dir_all(MARKER_DIR).with_context(|| format!("creating {MARKER_DIR}"))?;
    let path = marker_path(tag);
    std::fs::write(&path, std::process::id().to_string()).with_context(|| format!("writing {path}"))
}

/// Tags whose marker names a running process; markers of dead processes are removed.
fn live_tags() -> BTreeSet<String> {
    let mut live = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir(MARKER_DIR) else { return live };
    for entry in dir.flatten() {
        let path = entry.path();
        let Some(tag) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".pid")) else {
            continue;
        };
        let alive = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if alive {
            live.insert(tag.to_string());
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
    live
}

/// For tests that need root, `ip` and `nft`: false (and why, on stderr) when they are missing.
#[cfg(test)]
pub(crate) fn root_or_skip() -> bool {
    match require_root() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("skipping: {why}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate("abc123456", &["n1"]).is_ok());
        assert!(validate("abc1234567", &["n1"]).is_err(), "tag too long for ifnames");
        assert!(validate("", &["n1"]).is_err());
        assert!(validate("a-b", &["n1"]).is_err());
        assert!(validate("ab", &["n1", "n1"]).is_err());
        assert!(validate("ab", &["N1"]).is_err());
        assert!(validate("ab", &[]).is_err());
        assert_eq!(veth_tag("abc12v3"), "abc12");
        assert_eq!(veth_tag("abh10"), "ab");
    }

    #[test]
    fn hosts_reach_each_other_and_the_gateway() {
        if !root_or_skip() {
            return;
        }
        let net = Network::create("hreach", 201, &["n1", "n2", "c1"]).expect("create");
        assert_eq!(net.bridge, "gjhreach");
        assert_eq!(net.gateway, Ipv4Addr::new(10, 77, 201, 1));
        assert_eq!(net.host("n2").map(|h| h.ip), Some(Ipv4Addr::new(10, 77, 201, 11)));
        assert_eq!(net.host("c1").map(|h| h.ns.as_str()), Some("gj-hreach-c1"));
        assert_eq!(net.exec_prefix("n1"), ["ip", "netns", "exec", "gj-hreach-n1"]);
        net.self_check().expect("full mesh");

        // A command run through the exec prefix sees only its own namespace's address.
        let mut argv = net.exec_prefix("n2");
        argv.extend(["ip", "-o", "-4", "addr", "show", "dev", "eth0"].map(String::from));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = run(&argv).expect("ip in namespace");
        assert!(out.contains("10.77.201.11/24"), "{out}");

        // TCP from the root namespace (harness -> node) to a listener inside a host.
        let listener = net
            .in_host("n1", || std::net::TcpListener::bind("10.77.201.10:0"))
            .and_then(|r| Ok(r?))
            .expect("listen in n1");
        let addr = listener.local_addr().expect("addr");
        let accept = std::thread::spawn(move || listener.accept().map(|(_, peer)| peer));
        let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
        let peer = accept.join().expect("join").expect("accept");
        assert_eq!(peer.ip(), std::net::IpAddr::V4(net.gateway), "the harness appears as the gateway");
        drop(stream);

        // A live network survives a stale-cleanup pass.
        Network::cleanup_stale();
        assert!(ns_exists("gj-hreach-n1"));
        assert!(link_exists("gjhreach"));

        net.teardown();
        assert!(!ns_exists("gj-hreach-n1"));
        assert!(!link_exists("gjhreach"));
        assert!(!link_exists("gjhreachv0"));
        net.teardown(); // idempotent
    }

    #[test]
    fn stale_leftovers_are_removed_and_subnets_not_reused() {
        if !root_or_skip() {
            return;
        }
        let net = Network::create("hstale", 202, &["n1"]).expect("create");
        assert!(Network::create("hstale2", 202, &["n1"]).is_err(), "subnet in use");
        // Pretend the owner died: point the marker at a pid that cannot exist.
        std::fs::write(marker_path("hstale"), "4194305").expect("marker");
        Network::cleanup_stale();
        assert!(!ns_exists("gj-hstale-n1"));
        assert!(!link_exists("gjhstale"));
        assert!(!std::path::Path::new(&marker_path("hstale")).exists());
        drop(net); // teardown of an already removed network is harmless
    }

    #[test]
    fn a_failed_create_leaves_nothing_behind() {
        if !root_or_skip() {
            return;
        }
        // The second host's veth name is taken, so create fails half way through.
        // (Marked live first so a parallel test's cleanup_stale leaves the decoy alone.)
        write_marker("hfail").expect("marker");
        run(&["ip", "link", "add", "gjhfailv1", "type", "veth", "peer", "name", "xhfail1"]).expect("decoy");
        let res = Network::create("hfail", 203, &["n1", "n2"]);
        quiet(&["ip", "link", "del", "gjhfailv1"]);
        let err = format!("{:#}", res.expect_err("create must fail"));
        assert!(err.contains("gjhfailv1"), "{err}");
        assert!(!ns_exists("gj-hfail-n1"));
        assert!(!ns_exists("gj-hfail-n2"));
        assert!(!link_exists("gjhfail"));
        assert!(!link_exists("gjhfailv0"));
        assert!(!std::path::Path::new(&marker_path("hfail")).exists());

        // A namespace that exists already is refused up front and left alone.
        run(&["ip", "netns", "add", "gj-hfail-n2"]).expect("pre-create namespace");
        let res = Network::create("hfail", 203, &["n1", "n2"]);
        let still_there = ns_exists("gj-hfail-n2");
        quiet(&["ip", "netns", "del", "gj-hfail-n2"]);
        assert!(res.is_err());
        assert!(still_there, "create must not delete a namespace it did not make");
        assert!(!link_exists("gjhfail"));
    }
}
