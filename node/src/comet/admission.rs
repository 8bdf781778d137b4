//! Bounds on what clients may cost a comet, checked before any work is done for them:
//! connections per process and per source address, connection and auth rate per address
//! (so one address flooding is refused while every other address is still served), and
//! the length of the key and room id an auth may claim. The per-connection bounds
//! (WebSocket control frames, op-4 rate) are `ClientLimits` too; `ws` and `conn` apply
//! them.
//!
//! Addresses are tracked per IPv4 address and per IPv6 /64 (one host usually holds a
//! whole /64). An address is forgotten once it has no connection and its rate buckets are
//! full again, so the table holds the addresses seen in the last few seconds.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use goim_net::rpc::logic::AuthBody;
use tokio::time::Instant;

use crate::auth::Refusal;
use crate::rate::{Rate, TokenBucket};

/// How often idle addresses are swept from the table.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Most addresses tracked at once; past it new addresses are admitted untracked (the
/// process-wide cap still holds), so a spread-out flood cannot lock everyone out.
const MAX_TRACKED: usize = 1 << 18;

/// Client bounds of one comet (`goim run` flags; 0 turns a bound off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientLimits {
    /// Connections (TCP + WebSocket, authenticated or not) this comet holds at once.
    pub max_connections: usize,
    /// Connections one address holds at once.
    pub max_per_ip: usize,
    /// New connections per address.
    pub conn_rate: Rate,
    /// Auths per address.
    pub auth_rate: Rate,
    /// WebSocket control frames (ping, pong) per connection.
    pub ws_ping_rate: Rate,
    /// Op-4 messages per connection.
    pub uplink_rate: Rate,
    /// Longest key and room id an auth (or a room change) may name, in bytes.
    pub max_key_len: usize,
    pub max_room_len: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_connections: 0,
            max_per_ip: 0,
            conn_rate: Rate::UNLIMITED,
            auth_rate: Rate::UNLIMITED,
            ws_ping_rate: Rate::UNLIMITED,
            uplink_rate: Rate::UNLIMITED,
            max_key_len: 128,
            max_room_len: 256,
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    MaxConnections,
    MaxPerIp,
    ConnRate,
}

impl Refused {
    /// The `reason` label of `goim_comet_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refused::MaxConnections => "max_connections",
            Refused::MaxPerIp => "max_connections_per_ip",
            Refused::ConnRate => "connection_rate",
        }
    }

    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            Refused::MaxConnections => "too many connections",
            Refused::MaxPerIp => "too many connections from this address",
            Refused::ConnRate => "rate limited: too many new connections from this address",
        }
    }

    /// A rate refusal (HTTP 429) rather than a capacity one (HTTP 503).
    pub fn is_rate(self) -> bool {
        self == Refused::ConnRate
    }
}

/// One IPv4 address, or one IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct IpKey(IpAddr);

impl IpKey {
    fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    IpKey(IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
                }
            },
        }
    }
}

struct IpEntry {
    conns: usize,
    connects: TokenBucket,
    auths: TokenBucket,
}

struct IpTable {
    map: HashMap<IpKey, IpEntry>,
    swept: Instant,
}

/// The comet's admission: counts connections, tracks addresses.
pub struct Admission {
    limits: ClientLimits,
    open: AtomicUsize,
    ips: Mutex<IpTable>,
}

/// A connection's place in the counts; dropping it gives the place back.
pub struct Admitted {
    admission: Arc<Admission>,
    ip: Option<IpKey>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.open.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("goim_comet_open_connections").decrement(1.0);
        if let Some(ip) = self.ip {
            let mut table = self.admission.table();
            if let Some(entry) = table.map.get_mut(&ip) {
                entry.conns = entry.conns.saturating_sub(1);
            }
        }
    }
}

impl Admission {
    pub fn new(limits: ClientLimits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            open: AtomicUsize::new(0),
            ips: Mutex::new(IpTable { map: HashMap::new(), swept: Instant::now() }),
        })
    }

    /// Connections admitted and not yet closed.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, IpTable> {
        self.ips.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let max = self.limits.max_connections;
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if max > 0 && before >= max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::MaxConnections);
        }
        let tracked = self.admit_ip(IpKey::of(ip));
        if let Err(refused) = tracked {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(refused);
        }
        metrics::gauge!("goim_comet_open_connections").increment(1.0);
        Ok(Admitted { admission: self.clone(), ip: tracked.ok().flatten() })
    }

    /// The address part of `admit`: `Ok(None)` when the address is not tracked.
    fn admit_ip(&self, key: IpKey) -> Result<Option<IpKey>, Refused> {
        let limits = &self.limits;
        let now = Instant::now();
        let mut table = self.table();
        self.sweep(&mut table, now);
        if table.map.len() >= MAX_TRACKED && !table.map.contains_key(&key) {
            metrics::counter!("goim_comet_untracked_addresses_total").increment(1);
            return Ok(None);
        }
        let entry = table.map.entry(key).or_insert_with(|| IpEntry {
            conns: 0,
            connects: TokenBucket::new(limits.conn_rate, now),
            auths: TokenBucket::new(limits.auth_rate, now),
        });
        if limits.max_per_ip > 0 && entry.conns >= limits.max_per_ip {
            return Err(Refused::MaxPerIp);
        }
        if !entry.connects.take(limits.conn_rate, now) {
            return Err(Refused::ConnRate);
        }
        entry.conns += 1;
        Ok(Some(key))
    }

    fn sweep(&self, table: &mut IpTable, now: Instant) {
        if now.saturating_duration_since(table.swept) < SWEEP_EVERY {
            return;
        }
        table.swept = now;
        let (conn_rate, auth_rate) = (self.limits.conn_rate, self.limits.auth_rate);
        table.map.retain(|_, e| {
            e.conns > 0 || !e.connects.is_full(conn_rate, now) || !e.auths.is_full(auth_rate, now)
        });
    }

    /// Takes one auth from `ip`'s budget; refused with "rate limited" when it is spent.
    pub fn allow_auth(&self, ip: IpAddr) -> Result<(), Refusal> {
        let rate = self.limits.auth_rate;
        if !rate.is_limited() {
            return Ok(());
        }
        let now = Instant::now();
        let mut table = self.table();
        let Some(entry) = table.map.get_mut(&IpKey::of(ip)) else {
            return Ok(()); // untracked (the table was full when it connected)
        };
        if entry.auths.take(rate, now) {
            Ok(())
        } else {
            Err(Refusal::new("rate_limited", "rate limited"))
        }
    }

    /// The key and room id an auth names must fit the limits.
    pub fn check_auth_body(&self, body: &AuthBody) -> Result<(), Refusal> {
        check_len("key", &body.key, self.limits.max_key_len)?;
        self.check_room(&body.room_id)
    }

    /// A room id (auth or room change) must fit the limit.
    pub fn check_room(&self, room: &str) -> Result<(), Refusal> {
        check_len("room_id", room, self.limits.max_room_len)
    }
}

fn check_len(what: &str, value: &str, max: usize) -> Result<(), Refusal> {
    if max > 0 && value.len() > max {
        return Err(Refusal::new(
            "too_long",
            format!("{what}: {} bytes exceeds the limit of {max}", value.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn limits() -> ClientLimits {
        ClientLimits {
            max_connections: 4,
            max_per_ip: 2,
            conn_rate: Rate::new(1, 3),
            auth_rate: Rate::new(1, 2),
            ..ClientLimits::default()
        }
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    const C: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));

    #[test]
    fn caps_per_address_and_per_process() {
        let adm = Admission::new(limits());
        let a1 = adm.admit(A).unwrap();
        let _a2 = adm.admit(A).unwrap();
        assert_eq!(adm.admit(A).err(), Some(Refused::MaxPerIp));
        let _b1 = adm.admit(B).unwrap();
        let _b2 = adm.admit(B).unwrap();
        assert_eq!(adm.admit(C).err(), Some(Refused::MaxConnections));
        assert_eq!(adm.open(), 4);
        drop(a1);
        assert_eq!(adm.open(), 3);
        // A place is free again, and A has a rate token left (a refusal by the cap takes none).
        let _a3 = adm.admit(A).unwrap();
        assert_eq!(adm.open(), 4);
    }

    #[test]
    fn connection_and_auth_rate_per_address() {
        let adm = Admission::new(ClientLimits { max_per_ip: 0, max_connections: 0, ..limits() });
        let held: Vec<_> = (0..3).map(|_| adm.admit(A).unwrap()).collect();
        assert_eq!(adm.admit(A).err(), Some(Refused::ConnRate));
        assert!(adm.admit(B).is_ok(), "another address is still served");
        assert!(adm.allow_auth(A).is_ok() && adm.allow_auth(A).is_ok());
        assert_eq!(adm.allow_auth(A).unwrap_err().reason, "rate_limited");
        assert!(adm.allow_auth(B).is_ok());
        drop(held);
    }

    #[test]
    fn ipv6_is_tracked_per_64() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(IpKey::of(one), IpKey::of(two));
        assert_ne!(IpKey::of(one), IpKey::of(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(IpKey::of(mapped), IpKey::of(A));
    }

    #[test]
    fn key_and_room_lengths() {
        let adm = Admission::new(ClientLimits { max_key_len: 4, max_room_len: 6, ..ClientLimits::default() });
        let body =
            |key: &str, room: &str| AuthBody { key: key.into(), room_id: room.into(), ..AuthBody::default() };
        assert!(adm.check_auth_body(&body("abcd", "live:1")).is_ok());
        let e = adm.check_auth_body(&body("abcde", "")).unwrap_err();
        assert_eq!((e.reason, e.why.as_str()), ("too_long", "key: 5 bytes exceeds the limit of 4"));
        assert!(adm.check_auth_body(&body("", "live://1")).is_err());
    }
}
