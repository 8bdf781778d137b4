//! The renew loop (goim's RenewOnline): registers this comet with logic and reports its
//! per-room connection counts; logic answers with cluster-wide room counts, from which the
//! comet keeps the other comets' share for heartbeat replies. The first renew is retried
//! quickly until it succeeds, so a new comet is listed fast. When logic answers that the
//! comet had expired (its renewals did not get through in time), the comet re-registers
//! its live connections (`Resync`) and closes those whose key moved elsewhere meanwhile.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use goim_net::rpc::logic::{CometInfo, LiveSession};

use super::{write, Comet};
use goim_net::rpc::RpcError;

/// Delay before retrying a failed renew (capped by the renew interval).
const RETRY: Duration = Duration::from_millis(500);

/// Other comets' online count per room, as of the last RenewOnline reply.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OnlineSnapshot {
    remote: HashMap<String, u64>,
}

impl OnlineSnapshot {
    /// `cluster` is logic's total per room; `sent` the local counts it includes.
    pub fn from_reply(cluster: &BTreeMap<String, u64>, sent: &BTreeMap<String, u32>) -> Self {
        let remote = cluster
            .iter()
            .map(|(room, &total)| {
                let local = sent.get(room).copied().map_or(0, u64::from);
                (room.clone(), total.saturating_sub(local))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        OnlineSnapshot { remote }
    }

    pub fn remote(&self, room: &str) -> u64 {
        self.remote.get(room).copied().unwrap_or(0)
    }
}

/// Renews until shutdown: immediately, then every `renew_interval` (sooner after a failure).
pub async fn renew_loop(comet: Arc<Comet>) {
    let interval = comet.config().renew_interval;
    loop {
        comet.delivered().forget_quiet_rooms();
        let wait = match renew_once(&comet).await {
            Ok(()) => interval,
            Err(e) => {
                tracing::warn!(error = %e, "renew online failed");
                RETRY.min(interval)
            }
        };
        tokio::select! {
            _ = comet.shutdown_token().cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// This comet's registration and its connection counts: rooms, connections, addresses.
fn current_state(comet: &Comet) -> (CometInfo, BTreeMap<String, u32>, u32, u32) {
    let cfg = comet.config();
    let mut rooms = BTreeMap::new();
    let mut ips = HashSet::new();
    let mut conn_count = 0u32;
    for bucket in comet.buckets() {
        bucket.add_room_counts(&mut rooms);
        bucket.for_each(|ch| {
            ips.insert(ch.ip);
            conn_count = conn_count.saturating_add(1);
        });
    }
    let info = CometInfo {
        id: cfg.id.clone(),
        tcp_addr: cfg.advertise_tcp.clone(),
        ws_addr: cfg.advertise_ws.clone(),
        quic_addr: cfg.advertise_quic.clone(),
        zone: cfg.zone.clone(),
        weight: cfg.weight,
    };
    (info, rooms, conn_count, u32::try_from(ips.len()).unwrap_or(u32::MAX))
}

/// One RenewOnline round trip; stores the other comets' room counts, and resyncs the
/// comet's sessions if logic had expired it.
pub async fn renew_once(comet: &Comet) -> Result<(), RpcError> {
    let (info, rooms, conn_count, ip_count) = current_state(comet);
    // Fail over within the renew interval, so a dead logic node does not cost the comet
    // its registration.
    let within = comet.config().renew_interval.max(std::time::Duration::from_millis(500));
    let online = comet.logic().renew_online(info, rooms.clone(), conn_count, ip_count, within).await?;
    *write(comet.online()) = OnlineSnapshot::from_reply(&online.counts, &rooms);
    if !online.known {
        resync(comet).await?;
    }
    Ok(())
}

/// Re-registers every live connection; closes those logic reports superseded.
pub async fn resync(comet: &Comet) -> Result<(), RpcError> {
    let mut sessions = Vec::new();
    for bucket in comet.buckets() {
        bucket.for_each(|ch| {
            sessions.push(LiveSession {
                key: ch.key.clone(),
                mid: ch.mid,
                conn: ch.conn,
                room: ch.room().unwrap_or_default(),
                accepts: ch.accept_list(),
                ip: ch.ip.to_string(),
            })
        });
    }
    if sessions.is_empty() {
        return Ok(());
    }
    let count = sessions.len();
    let stale = comet.logic().resync(comet.id(), sessions).await?;
    for (key, conn) in &stale {
        if let Some(ch) = comet.channel(key).filter(|ch| ch.conn == *conn) {
            ch.close();
        }
    }
    metrics::counter!("goim_comet_resyncs_total").increment(1);
    tracing::warn!(
        sessions = count,
        stale = stale.len(),
        "comet had expired in logic; sessions re-registered"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comet::testkit::{auth, Cluster};
    use goim_client::Client;
    use goim_net::rpc::logic::LogicRequest;

    #[test]
    fn snapshot_keeps_only_the_other_comets_share() {
        let cluster = BTreeMap::from([("a".into(), 10), ("b".into(), 3), ("c".into(), 1)]);
        let sent = BTreeMap::from([("a".into(), 4), ("b".into(), 3), ("c".into(), 5)]);
        let snap = OnlineSnapshot::from_reply(&cluster, &sent);
        assert_eq!((snap.remote("a"), snap.remote("b")), (6, 0));
        assert_eq!(snap.remote("c"), 0, "never negative");
        assert_eq!(snap.remote("missing"), 0);
    }

    #[tokio::test]
    async fn renew_registers_the_comet_with_its_counts() {
        let cluster = Cluster::start().await;
        let mut a = Client::connect_tcp(&cluster.tcp()).await.unwrap();
        a.auth(&auth(1, "live://1", &[])).await.unwrap();
        let mut b = Client::connect_ws(&cluster.ws()).await.unwrap();
        b.auth(&auth(2, "live://2", &[])).await.unwrap();

        renew_once(&cluster.comet).await.unwrap();
        let renews = cluster.logic.renews();
        let Some(LogicRequest::RenewOnline { comet, rooms, conn_count, ip_count }) = renews.last() else {
            panic!("no renew seen: {renews:?}");
        };
        assert_eq!(comet.id, cluster.comet.id());
        assert_eq!(comet.quic_addr, cluster.comet.config().advertise_quic);
        assert_eq!(rooms, &BTreeMap::from([("live://1".into(), 1), ("live://2".into(), 1)]));
        assert_eq!((*conn_count, *ip_count), (2, 1));
    }

    #[tokio::test]
    async fn an_expired_comet_resyncs_its_sessions_and_closes_stale_ones() {
        let cluster = Cluster::start().await;
        let mut a = Client::connect_tcp(&cluster.tcp()).await.unwrap();
        let a_key = a.auth(&auth(1, "live://1", &[1000])).await.unwrap().key;
        let mut b = Client::connect_ws(&cluster.ws()).await.unwrap();
        let b_key = b.auth(&auth(2, "live://2", &[])).await.unwrap().key;
        let b_conn = cluster.comet.channel(&b_key).unwrap().conn;

        cluster.logic.expire_comet(vec![(b_key.clone(), b_conn)]);
        renew_once(&cluster.comet).await.unwrap();
        let requests = cluster.logic.requests();
        let Some(LogicRequest::Resync { comet, sessions }) = requests.last() else {
            panic!("no resync after an expired renewal: {requests:?}");
        };
        assert_eq!(comet, cluster.comet.id());
        let mut keys: Vec<(&str, &str, Vec<i32>)> =
            sessions.iter().map(|s| (s.key.as_str(), s.room.as_str(), s.accepts.clone())).collect();
        keys.sort();
        let mut want = vec![(a_key.as_str(), "live://1", vec![1000]), (b_key.as_str(), "live://2", vec![])];
        want.sort();
        assert_eq!(keys, want);
        // b's key lives elsewhere now: its connection is closed; a's is kept.
        assert!(crate::comet::testkit::closed(&mut b).await);
        a.heartbeat().await.unwrap();
    }
}
