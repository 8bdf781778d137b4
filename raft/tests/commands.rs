//! The Raft commands applied through the real sled state machine (as openraft would apply
//! committed entries): target resolution at apply time, key takeover (same mid only),
//! disconnect races, comet expiry, lease fencing, atomic replay after a restart.
use std::collections::BTreeMap;

use goim_net::rpc::logic::CometInfo;
use goim_net::rpc::PushTarget;
use goim_raft::command::*;
use goim_raft::{Reply, Request, TypeConfig};
use goim_storage::tables::sessions::Session;
use goim_storage::tables::{comets, offsets, pushlog, requests, rooms, sessions};
use goim_storage::StateMachine;
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

struct Sm {
    sm: StateMachine<TypeConfig>,
    index: u64,
    _dir: Option<tempfile::TempDir>,
}

impl Sm {
    async fn new() -> Sm {
        let dir = tempfile::tempdir().unwrap();
        let (_, sm) = goim_storage::open::<TypeConfig>(dir.path(), Default::default()).await.unwrap();
        Sm { sm, index: 0, _dir: Some(dir) }
    }

    async fn apply(&mut self, reqs: Vec<Request>) -> Vec<Reply> {
        let entries: Vec<Entry<TypeConfig>> = reqs
            .into_iter()
            .map(|r| {
                self.index += 1;
                Entry {
                    log_id: LogId::new(CommittedLeaderId::new(1, 1), self.index),
                    payload: EntryPayload::Normal(r),
                }
            })
            .collect();
        self.sm.apply(entries).await.unwrap()
    }

    async fn one(&mut self, req: Request) -> Reply {
        self.apply(vec![req]).await.remove(0)
    }
}

fn session(key: &str, mid: i64, comet: &str, conn: u64, room: &str) -> Session {
    Session {
        key: key.into(),
        mid,
        comet: comet.into(),
        conn,
        room: room.into(),
        accepts: vec![1000],
        platform: "web".into(),
        ip: "127.0.0.1".into(),
        connected_ms: 1,
    }
}

fn connect(key: &str, mid: i64, comet: &str, conn: u64) -> Request {
    Request::Connect(Connect { session: session(key, mid, comet, conn, "live://1") })
}

/// A push with a fresh request id.
fn push(to: PushTo) -> Request {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    push_with_id(&format!("id-{}", NEXT.fetch_add(1, Ordering::Relaxed)), to, 5)
}

fn push_with_id(id: &str, to: PushTo, ts_ms: u64) -> Request {
    Request::Push(Push { id: id.into(), to, op: 1000, body: "b".into(), ts_ms, room_keep: 0 })
}

fn room_push(room: &str, n: u64, keep: u64) -> Request {
    let body = format!("{room}-{n}").into();
    let id = format!("{room}-{n}");
    Request::Push(Push { id, to: PushTo::Room(room.into()), op: 1000, body, ts_ms: 100 + n, room_keep: keep })
}

fn history_offsets(sm: &Sm, room: &str, after: u64) -> Vec<u64> {
    let records = rooms::history(&sm.sm.view(), room, after, u64::MAX, 100, usize::MAX).unwrap();
    records.iter().map(|r| r.room_seq().unwrap()).collect()
}

#[tokio::test]
async fn room_history_is_windowed_per_room_trimmed_with_the_log_and_has_an_epoch() {
    let mut sm = Sm::new().await;
    for n in 1..=5 {
        sm.one(room_push("a", n, 3)).await;
    }
    for n in 1..=2 {
        sm.one(room_push("b", n, 0)).await;
    }
    assert_eq!(history_offsets(&sm, "a", 0), [3, 4, 5], "a keeps its last 3");
    assert_eq!(history_offsets(&sm, "a", 3), [4, 5]);
    assert_eq!(history_offsets(&sm, "b", 0), [1, 2]);
    assert!(history_offsets(&sm, "a", 5).is_empty());
    let records = rooms::history(&sm.sm.view(), "a", 3, 4, 100, usize::MAX).unwrap();
    assert_eq!(records.len(), 1, "up to `until`");
    assert_eq!(records[0].body, "a-4", "history reads the push-log record");

    // Trimming the log (a's 1..=3 at seqs 1..=3) takes their history entries with them.
    sm.one(Request::Trim(Trim { partition: 0, before_seq: 4 })).await;
    assert_eq!(history_offsets(&sm, "a", 0), [4, 5]);
    sm.one(Request::Trim(Trim { partition: 0, before_seq: 7 })).await;
    assert_eq!(history_offsets(&sm, "b", 0), [2]);
    assert!(history_offsets(&sm, "a", 0).is_empty());

    // The epoch comes from the command that first saw the room, and never changes after.
    let view = sm.sm.view();
    assert_eq!(rooms::state(&view, "a").unwrap(), Some(rooms::RoomState { last_seq: 5, epoch: 101 }));
    let in_b = Connect { session: session("k", 1, "c1", 1, "b") };
    assert_eq!(sm.one(Request::Connect(in_b)).await, Reply::Joined { room_seq: 2, epoch: 101 });
    let to_new = ChangeRoom { comet: "c1".into(), key: "k".into(), conn: 1, room: "new".into(), ts_ms: 777 };
    assert_eq!(sm.one(Request::ChangeRoom(to_new)).await, Reply::Joined { room_seq: 0, epoch: 777 });
    let to_a = ChangeRoom { comet: "c1".into(), key: "k".into(), conn: 1, room: "a".into(), ts_ms: 999 };
    assert_eq!(sm.one(Request::ChangeRoom(to_a)).await, Reply::Joined { room_seq: 5, epoch: 101 });
    let no_room = ChangeRoom { comet: "c1".into(), key: "k".into(), conn: 1, room: String::new(), ts_ms: 1 };
    assert_eq!(sm.one(Request::ChangeRoom(no_room)).await, Reply::Joined { room_seq: 0, epoch: 0 });
}

#[tokio::test]
async fn key_and_mid_pushes_resolve_to_one_record_per_comet() {
    let mut sm = Sm::new().await;
    sm.apply(vec![connect("a", 1, "c1", 1), connect("b", 1, "c2", 2), connect("c", 2, "c1", 3)]).await;

    let reply = sm.one(push(PushTo::Mids(vec![1, 2, 99]))).await;
    assert_eq!(reply, Reply::Pushed { seq: 2, room_seq: 0 });
    let view = sm.sm.view();
    let recs = pushlog::range(&view, 0, 1, 10).unwrap();
    let targets: Vec<PushTarget> = recs.iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        targets,
        vec![
            PushTarget::Keys { comet: "c1".into(), keys: vec!["a".into(), "c".into()] },
            PushTarget::Keys { comet: "c2".into(), keys: vec!["b".into()] },
        ]
    );
    // Nobody online: nothing appended, the reply names the current head.
    assert_eq!(sm.one(push(PushTo::Keys(vec!["zzz".into()]))).await, Reply::Pushed { seq: 2, room_seq: 0 });
    // Room pushes get dense per-room offsets; broadcasts one record.
    assert_eq!(sm.one(push(PushTo::Room("live://1".into()))).await, Reply::Pushed { seq: 3, room_seq: 1 });
    assert_eq!(
        sm.one(connect("late", 3, "c1", 9)).await,
        Reply::Joined { room_seq: 1, epoch: 1 },
        "offset at join"
    );
    assert_eq!(sm.one(push(PushTo::Room("live://2".into()))).await, Reply::Pushed { seq: 4, room_seq: 1 });
    assert_eq!(sm.one(push(PushTo::Room("live://1".into()))).await, Reply::Pushed { seq: 5, room_seq: 2 });
    assert_eq!(sm.one(push(PushTo::All)).await, Reply::Pushed { seq: 6, room_seq: 0 });
    assert_eq!(pushlog::head(&view, 0).unwrap(), pushlog::LogHead { first_seq: 1, last_seq: 6 });
}

#[tokio::test]
async fn a_retried_push_applies_once_and_ids_expire() {
    let mut sm = Sm::new().await;
    let room = || PushTo::Room("live://1".into());
    assert_eq!(sm.one(push_with_id("x", room(), 1_000)).await, Reply::Pushed { seq: 1, room_seq: 1 });
    // The retry (same id), even in the same batch as another push, answers the first outcome.
    let replies = sm
        .one(Request::Batch(vec![push_with_id("x", room(), 2_000), push_with_id("y", room(), 2_000)]))
        .await;
    assert_eq!(
        replies,
        Reply::Batch(vec![Reply::Pushed { seq: 1, room_seq: 1 }, Reply::Pushed { seq: 2, room_seq: 2 }])
    );
    assert_eq!(pushlog::head(&sm.sm.view(), 0).unwrap().last_seq, 2);
    // Long after, "x" is forgotten (expiry runs per batch): a push with that id is new again.
    let later = 1_000 + requests::REMEMBER_MS + 1;
    sm.one(Request::Batch(vec![push_with_id("z", room(), later)])).await;
    assert_eq!(sm.one(push_with_id("x", room(), later)).await, Reply::Pushed { seq: 4, room_seq: 4 });
    // Generated (time-ordered) ids expire the same way.
    let g = requests::generated_id(later, 7);
    sm.one(push_with_id(&g, room(), later)).await;
    assert!(requests::get(&sm.sm.view(), &g).unwrap().is_some());
    let much_later = later + requests::REMEMBER_MS + requests::SLOT_MS;
    sm.one(Request::Batch(vec![push_with_id("w", room(), much_later)])).await;
    assert!(requests::get(&sm.sm.view(), &g).unwrap().is_none(), "forgotten");
}

fn pushed(seq: u64, room_seq: u64) -> Pushed {
    Pushed { seq, room_seq }
}

/// The pushes of `Request::Push` values, for a `PushBatch`.
fn pushes(reqs: Vec<Request>) -> Vec<Push> {
    reqs.into_iter()
        .filter_map(|r| match r {
            Request::Push(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_push_batch_applies_in_order_once_per_id_and_expires_ids_in_its_batch() {
    let mut sm = Sm::new().await;
    let room = || PushTo::Room("live://1".into());
    let first = pushes(vec![
        push_with_id("a", room(), 1_000),
        push_with_id("b", PushTo::All, 1_000),
        push_with_id("c", room(), 1_000),
    ]);
    let reply = sm.one(Request::Batch(vec![Request::PushBatch(PushBatch(first.clone()))])).await;
    let want = vec![pushed(1, 1), pushed(2, 0), pushed(3, 2)];
    assert_eq!(reply, Reply::Batch(vec![Reply::PushedEach(want.clone())]));
    let history = rooms::history(&sm.sm.view(), "live://1", 0, u64::MAX, 100, usize::MAX).unwrap();
    assert_eq!(history.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 3], "line order in the room");

    // Resent whole: the first outcomes, nothing appended; mixed with a new id: only it is.
    assert_eq!(sm.one(Request::PushBatch(PushBatch(first))).await, Reply::PushedEach(want));
    let mixed = pushes(vec![push_with_id("c", room(), 2_000), push_with_id("d", room(), 2_000)]);
    let reply = sm.one(Request::PushBatch(PushBatch(mixed))).await;
    assert_eq!(reply, Reply::PushedEach(vec![pushed(3, 2), pushed(4, 3)]));
    assert_eq!(pushlog::head(&sm.sm.view(), 0).unwrap().last_seq, 4);

    // A batch entry holding only a PushBatch still forgets ids past their memory.
    let later = 2_000 + requests::REMEMBER_MS + 1;
    let reply = sm
        .one(Request::Batch(vec![Request::PushBatch(PushBatch(pushes(vec![push_with_id(
            "e",
            room(),
            later,
        )])))]))
        .await;
    assert_eq!(reply, Reply::Batch(vec![Reply::PushedEach(vec![pushed(5, 4)])]));
    assert!(requests::get(&sm.sm.view(), "a").unwrap().is_none(), "forgotten");
}

#[tokio::test]
async fn a_batch_forgets_at_least_as_many_ids_as_it_remembers() {
    let mut sm = Sm::new().await;
    let ids = |ts_ms: u64| (0..1500).map(move |i| requests::generated_id(ts_ms, i));
    let batch = |ts_ms: u64| {
        let pushes = pushes(ids(ts_ms).map(|id| push_with_id(&id, PushTo::All, ts_ms)).collect());
        Request::Batch(vec![Request::PushBatch(PushBatch(pushes))])
    };
    sm.one(batch(1_000)).await;
    sm.one(batch(1_000 + requests::REMEMBER_MS + requests::SLOT_MS)).await;
    let view = sm.sm.view();
    let remembered = ids(1_000).filter(|id| requests::get(&view, id).unwrap().is_some()).count();
    assert_eq!(remembered, 0, "all 1,500 forgotten by the next batch of 1,500");
}

#[tokio::test]
async fn same_key_takeover_kicks_the_old_connection_and_its_disconnect_is_ignored() {
    let mut sm = Sm::new().await;
    sm.one(connect("k", 7, "c1", 1)).await;
    sm.one(connect("k", 7, "c2", 9)).await;
    let view = sm.sm.view();
    let recs = pushlog::range(&view, 0, 1, 10).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].target, PushTarget::Kick { comet: "c1".into(), key: "k".into(), conn: 1 });
    // The old connection's late Disconnect must not remove the new session.
    sm.one(Request::Disconnect(Disconnect { comet: "c1".into(), key: "k".into(), conn: 1 })).await;
    assert_eq!(sessions::get(&view, "k").unwrap().map(|s| s.conn), Some(9));
    assert_eq!(sessions::keys_of_mid(&view, 7).unwrap(), vec!["k".to_string()]);
    sm.one(Request::Disconnect(Disconnect { comet: "c2".into(), key: "k".into(), conn: 9 })).await;
    assert!(sessions::get(&view, "k").unwrap().is_none());
    assert!(sessions::keys_of_mid(&view, 7).unwrap().is_empty());
}

#[tokio::test]
async fn a_key_held_by_one_mid_is_refused_to_another_and_free_again_once_released() {
    let mut sm = Sm::new().await;
    sm.one(connect("k", 7, "c1", 1)).await;
    let refused = sm.one(connect("k", 8, "c2", 2)).await;
    assert!(matches!(&refused, Reply::Refused(why) if why.starts_with(KEY_HELD)), "{refused:?}");
    let view = sm.sm.view();
    let held = sessions::get(&view, "k").unwrap().unwrap();
    assert_eq!((held.mid, held.comet.as_str(), held.conn), (7, "c1", 1), "unchanged");
    assert!(pushlog::range(&view, 0, 1, 10).unwrap().is_empty(), "nobody kicked");
    assert!(sessions::keys_of_mid(&view, 8).unwrap().is_empty());
    // In one batch, in order: the same mid reconnecting (another comet) is a takeover, the
    // other mid is still refused.
    let replies = sm.one(Request::Batch(vec![connect("k", 8, "c3", 3), connect("k", 7, "c2", 4)])).await;
    let Reply::Batch(replies) = replies else { panic!("{replies:?}") };
    assert!(matches!(&replies[0], Reply::Refused(_)), "{replies:?}");
    assert!(matches!(&replies[1], Reply::Joined { .. }), "{replies:?}");
    assert_eq!(sessions::get(&view, "k").unwrap().map(|s| (s.mid, s.conn)), Some((7, 4)));
    // Released by its disconnect: another mid may have it now.
    sm.one(Request::Disconnect(Disconnect { comet: "c2".into(), key: "k".into(), conn: 4 })).await;
    assert!(matches!(sm.one(connect("k", 8, "c2", 5)).await, Reply::Joined { .. }));
    assert_eq!(sessions::get(&view, "k").unwrap().map(|s| s.mid), Some(8));
}

fn renew(id: &str, now_ms: u64, rooms: &[(&str, u32)]) -> Request {
    Request::RenewOnline(RenewOnline {
        comet: CometInfo {
            id: id.into(),
            tcp_addr: "t".into(),
            ws_addr: "w".into(),
            quic_addr: "q".into(),
            zone: String::new(),
            weight: 1,
        },
        rooms: rooms.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
        conn_count: rooms.iter().map(|(_, n)| n).sum(),
        ip_count: 1,
        now_ms,
        ttl_ms: 1_000,
    })
}

#[tokio::test]
async fn renewals_sum_rooms_and_tick_expires_dead_comets_with_their_sessions() {
    let mut sm = Sm::new().await;
    sm.apply(vec![connect("a", 1, "c1", 1), connect("b", 2, "c2", 2)]).await;
    let first = sm.one(renew("c1", 0, &[("live://1", 3)])).await;
    assert!(matches!(first, Reply::RoomCounts { known: false, .. }), "new comet: {first:?}");
    let reply = sm.one(renew("c2", 500, &[("live://1", 2), ("live://2", 1)])).await;
    let want: BTreeMap<String, u64> = [("live://1".to_string(), 5), ("live://2".to_string(), 1)].into();
    assert_eq!(reply, Reply::RoomCounts { counts: want, known: false });
    let again = sm.one(renew("c2", 600, &[("live://1", 2), ("live://2", 1)])).await;
    assert!(matches!(again, Reply::RoomCounts { known: true, .. }));

    // At 1200 ms c1 (expires 1000) is dead, c2 (expires 1500) is not: c1 loses its sessions
    // and counts but stays registered (expired) for jobs until the grace period is over.
    sm.one(Request::Tick(Tick { now_ms: 1_200 })).await;
    let view = sm.sm.view();
    assert!(comets::get(&view, "c1").unwrap().is_some_and(|c| c.expired && !c.is_live(1_200)));
    assert!(sessions::get(&view, "a").unwrap().is_none(), "c1's sessions went with it");
    assert!(sessions::get(&view, "b").unwrap().is_some());
    let totals = comets::room_totals(&view).unwrap();
    assert_eq!(totals.get("live://1"), Some(&2));

    // c1 comes back after its expiry: it learns it was dropped and resyncs; a key that
    // connected elsewhere meanwhile is reported stale rather than overwritten.
    assert!(matches!(sm.one(renew("c1", 1_300, &[])).await, Reply::RoomCounts { known: false, .. }));
    sm.one(connect("moved", 9, "c2", 77)).await;
    let live = |key: &str, conn| goim_net::rpc::logic::LiveSession {
        key: key.into(),
        mid: 1,
        conn,
        room: "live://1".into(),
        accepts: vec![],
        ip: "127.0.0.1".into(),
    };
    let reply = sm
        .one(Request::Resync(Resync {
            comet: "c1".into(),
            sessions: vec![live("a", 1), live("moved", 5)],
            now_ms: 1_300,
        }))
        .await;
    assert_eq!(reply, Reply::Stale(vec![("moved".into(), 5)]));
    assert_eq!(sessions::get(&view, "a").unwrap().map(|s| s.comet), Some("c1".into()));
    assert_eq!(sessions::get(&view, "moved").unwrap().map(|s| s.comet), Some("c2".into()));

    // A comet that stays silent past the grace period leaves the registry.
    let later = 1_500 + goim_raft::command::FORGET_AFTER_MS + 1_000;
    sm.one(Request::Tick(Tick { now_ms: later })).await;
    assert!(comets::get(&view, "c2").unwrap().is_some_and(|c| c.expired), "c2 expired first");
    assert!(comets::get(&view, "c1").unwrap().is_some_and(|c| c.expired), "c1 at the same tick");
    for key in ["a", "b", "moved"] {
        assert!(
            sessions::get(&view, key).unwrap().is_none(),
            "{key}: both comets' sessions went at one tick"
        );
    }
    sm.one(Request::Tick(Tick { now_ms: later + goim_raft::command::FORGET_AFTER_MS + 1 })).await;
    assert!(comets::get(&view, "c2").unwrap().is_none(), "then forgotten");
}

#[tokio::test]
async fn leases_fence_offset_commits_and_expire() {
    let mut sm = Sm::new().await;
    let acquire = |job: &str, now_ms| {
        Request::AcquireLease(AcquireLease { partition: 0, job: job.into(), now_ms, ttl_ms: 100 })
    };
    let commit = |job: &str, seq| Request::CommitOffset(CommitOffset { partition: 0, job: job.into(), seq });

    assert_eq!(
        sm.one(acquire("j1", 0)).await,
        Reply::Lease { granted: true, holder: "j1".into(), offset: 0 }
    );
    assert_eq!(
        sm.one(acquire("j2", 50)).await,
        Reply::Lease { granted: false, holder: "j1".into(), offset: 0 }
    );
    assert_eq!(sm.one(commit("j1", 10)).await, Reply::Offset(10));
    assert!(matches!(sm.one(commit("j2", 20)).await, Reply::Refused(_)), "non-holder fenced");
    assert_eq!(sm.one(commit("j1", 4)).await, Reply::Offset(10), "offsets never go back");
    // j1 stops renewing: after its TTL j2 takes over from the committed offset.
    assert_eq!(
        sm.one(acquire("j2", 101)).await,
        Reply::Lease { granted: true, holder: "j2".into(), offset: 10 }
    );
    assert!(matches!(sm.one(commit("j1", 30)).await, Reply::Refused(_)), "the old holder is fenced");
    sm.one(Request::ReleaseLease(ReleaseLease { partition: 0, job: "j2".into() })).await;
    assert_eq!(
        sm.one(acquire("j3", 102)).await,
        Reply::Lease { granted: true, holder: "j3".into(), offset: 10 }
    );
    assert_eq!(offsets::offset(&sm.sm.view(), 0).unwrap(), 10);
}

#[tokio::test]
async fn applied_state_and_tables_survive_reopen_together() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_, sm) = goim_storage::open::<TypeConfig>(dir.path(), Default::default()).await.unwrap();
        let mut sm = Sm { sm, index: 0, _dir: None };
        sm.apply(vec![connect("a", 1, "c1", 1), push(PushTo::Room("live://1".into()))]).await;
    }
    // The log flusher task lets go of the db (sled's exclusive lock) just after the drop.
    let mut reopened = None;
    for _ in 0..100 {
        match goim_storage::open::<TypeConfig>(dir.path(), Default::default()).await {
            Ok((_, sm)) => {
                reopened = Some(sm);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    let mut sm = reopened.expect("db reopens once the old handles are gone");
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(2));
    let view = sm.view();
    assert_eq!(pushlog::head(&view, 0).unwrap().last_seq, 1);
    assert!(sessions::get(&view, "a").unwrap().is_some());
}
