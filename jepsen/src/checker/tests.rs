//! Synthetic histories (no network): the checker passes a clean one and finds every kind of
//! anomaly it is meant to find.
use super::verdict::verdict;
use super::*;
use crate::history::{Event, Phase, PushKind, What};

const ROOM: &str = "live://1";

/// Builds a history, one event every 100 ms unless `at` moves the clock.
#[derive(Default)]
struct H {
    t: f64,
    events: Vec<Event>,
}

impl H {
    fn at(&mut self, t: f64) -> &mut Self {
        self.t = t;
        self
    }
    fn ev(&mut self, what: What) -> &mut Self {
        self.events.push(Event { t: self.t, what });
        self.t += 100.0;
        self
    }
    fn invoke(&mut self, op: u64, kind: PushKind, target: &str) -> &mut Self {
        self.ev(What::Invoke {
            op,
            process: "pusher-0".into(),
            kind,
            target: target.into(),
            value: val(op),
            idem: true,
        })
    }
    fn ok(&mut self, op: u64, seq: u64, room_seq: Option<u64>) -> &mut Self {
        self.ev(What::Ok { op, node: "n1".into(), seq, room_seq })
    }
    /// Invoke + Ok of room push `op` at log seq `op`, room offset `rs`.
    fn room(&mut self, op: u64, rs: u64) -> &mut Self {
        self.invoke(op, PushKind::Room, ROOM).ok(op, op, Some(rs))
    }
    fn fail(&mut self, op: u64) -> &mut Self {
        self.ev(What::Fail { op, error: "refused".into() })
    }
    fn info(&mut self, op: u64) -> &mut Self {
        self.ev(What::Info { op, error: "timeout".into() })
    }
    fn client(&mut self, c: &str, mid: i64) -> &mut Self {
        self.ev(What::Client {
            client: c.into(),
            mid,
            key: format!("key-{c}"),
            room: ROOM.into(),
            transport: "tcp".into(),
        })
    }
    fn connected(&mut self, c: &str, room_seq: u64, resume: bool, recovered: bool) -> &mut Self {
        self.ev(What::Connected {
            client: c.into(),
            comet: "n1".into(),
            room_seq,
            epoch: "e1".into(),
            recovered,
            resume,
        })
    }
    fn deliver(&mut self, c: &str, room_seq: Option<u64>, value: &str) -> &mut Self {
        self.ev(What::Deliver { client: c.into(), op: 1000, room_seq, value: value.into() })
    }
    /// Room deliveries of ops whose room offset equals their op id.
    fn deliver_room(&mut self, c: &str, ops: &[u64]) -> &mut Self {
        for &op in ops {
            self.deliver(c, Some(op), &val(op));
        }
        self
    }
    fn gone(&mut self, c: &str) -> &mut Self {
        self.ev(What::ClientGone { client: c.into(), error: "gave up".into() })
    }
    fn nemesis(&mut self, phase: Phase, kind: &str, detail: &str) -> &mut Self {
        self.ev(What::Nemesis { phase, kind: kind.into(), detail: detail.into() })
    }
    fn leader(&mut self, node: &str, term: u64) -> &mut Self {
        self.ev(What::Leader { node: Some(node.into()), term })
    }
}

fn val(op: u64) -> String {
    format!("v{op}-0")
}

fn room_record(seq: u64, room_seq: u64, body: &str) -> LogRecord {
    LogRecord {
        seq,
        kind: "room".into(),
        room: Some(ROOM.into()),
        room_seq: Some(room_seq),
        comet: None,
        op: 1000,
        body: body.into(),
    }
}

fn keys_record(seq: u64, comet: &str, body: &str) -> LogRecord {
    LogRecord {
        seq,
        kind: "keys".into(),
        comet: Some(comet.into()),
        op: 1000,
        body: body.into(),
        ..LogRecord::default()
    }
}

/// Three identical, caught-up replicas holding `records`.
fn replicas(records: Vec<LogRecord>) -> FinalState {
    let last_seq = records.iter().map(|r| r.seq).max().unwrap_or(0);
    FinalState {
        replicas: ["n1", "n2", "n3"]
            .iter()
            .map(|n| Replica {
                node: n.to_string(),
                error: None,
                last_seq,
                applied_index: Some(last_seq + 10),
                job_offset: Some(last_seq),
                records: records.clone(),
            })
            .collect(),
    }
}

/// The log of room pushes 1..=n at seq = room_seq = op.
fn room_log(n: u64) -> Vec<LogRecord> {
    (1..=n).map(|i| room_record(i, i, &val(i))).collect()
}

/// Two clients in the room from offset 0, pushes 1..=5 acknowledged.
fn base() -> H {
    let mut h = H::default();
    h.client("c1", 1).client("c2", 2).connected("c1", 0, false, false).connected("c2", 0, false, false);
    for op in 1..=5 {
        h.room(op, op);
    }
    h
}

fn clean_history() -> (H, FinalState) {
    let mut h = base();
    h.deliver_room("c1", &[1, 2, 3, 4, 5]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    // A mid push to c1 (well after it connected), a key push to c2.
    h.at(3000.0).invoke(6, PushKind::Mid, "1").ok(6, 6, None).deliver("c1", None, &val(6));
    h.invoke(7, PushKind::Key, "key-c2").ok(7, 7, None).deliver("c2", None, &val(7));
    // Indeterminate push, committed at offset 6, delivered to both; a failed one, nowhere.
    h.invoke(8, PushKind::Room, ROOM).info(8).deliver("c1", Some(6), &val(8)).deliver("c2", Some(6), &val(8));
    h.invoke(9, PushKind::Room, ROOM).fail(9);
    h.nemesis(Phase::Start, "kill", "n1").leader("n2", 2).room(10, 7);
    h.deliver_room("c1", &[]).deliver("c1", Some(7), &val(10)).deliver("c2", Some(7), &val(10));
    h.nemesis(Phase::Stop, "kill", "n1");
    let mut log = room_log(5);
    log.push(keys_record(6, "n1", &val(6)));
    log.push(keys_record(7, "n2", &val(7)));
    log.push(room_record(8, 6, &val(8)));
    log.push(room_record(10, 7, &val(10)));
    (h, replicas(log))
}

fn counts(s: &Summary) -> [u64; 5] {
    [s.lost.total, s.duplicated.total, s.reordered.total, s.unexpected.total, s.gaps.total]
}

#[test]
fn clean_history_is_valid() {
    let (h, state) = clean_history();
    let s = check(&h.events, &state);
    assert_eq!(counts(&s), [0; 5], "{}", verdict(&s));
    assert!(s.valid, "{}", verdict(&s));
    assert!(s.replicas.agree && s.replicas.jobs_caught_up);
    assert_eq!(s.counts.clients, 2);
    assert_eq!(s.counts.deliveries, 16);
    assert_eq!(s.counts.ops["room"], OpCounts { invoked: 8, ok: 6, fail: 1, info: 1 });
    assert_eq!(s.counts.ops["mid"].ok, 1);
    assert_eq!((s.counts.invoked, s.counts.ok, s.counts.fail, s.counts.info), (10, 8, 1, 1));
    assert_eq!(s.counts.faults["kill"], 1);
    assert!(verdict(&s).ends_with("valid: true\n"));
}

#[test]
fn finds_a_lost_acked_room_push() {
    let mut h = base();
    h.deliver_room("c1", &[1, 2, 4, 5]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    let s = check(&h.events, &replicas(room_log(5)));
    assert_eq!(counts(&s), [1, 0, 0, 0, 0]);
    let lost = &s.lost.first[0];
    assert_eq!(
        (lost.value.as_deref(), lost.client.as_deref(), lost.room_seq),
        (Some("v3-0"), Some("c1"), Some(3))
    );
    assert!(lost.invoke_t.is_some() && lost.ok_t.is_some());
    assert!(!s.valid);
    let text = verdict(&s);
    assert!(text.contains("lost pushes: v3-0"), "{text}");
    assert!(text.ends_with("INVALID: 1 lost, 0 duplicated, 0 reordered, 0 unexpected, 0 gaps\n"), "{text}");
}

#[test]
fn finds_a_lost_tail() {
    let mut h = base();
    h.deliver_room("c1", &[1, 2, 3]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    let s = check(&h.events, &replicas(room_log(5)));
    assert_eq!(counts(&s), [2, 0, 0, 0, 0]);
    let seqs: Vec<_> = s.lost.first.iter().map(|a| a.room_seq).collect();
    assert_eq!(seqs, [Some(4), Some(5)]);
}

#[test]
fn a_client_that_joined_late_is_owed_only_what_followed() {
    let mut h = base();
    h.client("c3", 3).connected("c3", 3, false, false).deliver_room("c3", &[4, 5]);
    h.deliver_room("c1", &[1, 2, 3, 4, 5]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    let s = check(&h.events, &replicas(room_log(5)));
    assert!(s.valid, "{}", verdict(&s));
}

#[test]
fn finds_a_duplicate() {
    let mut h = base();
    h.deliver_room("c1", &[1, 2, 3, 3, 4, 5]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    let s = check(&h.events, &replicas(room_log(5)));
    assert_eq!(counts(&s), [0, 1, 0, 0, 0]);
    assert_eq!(s.duplicated.first[0].value.as_deref(), Some("v3-0"));
}

#[test]
fn finds_a_reorder() {
    let mut h = base();
    h.deliver_room("c1", &[1, 3, 2, 4, 5]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    let s = check(&h.events, &replicas(room_log(5)));
    assert_eq!(counts(&s), [0, 0, 1, 0, 0]);
    assert_eq!(s.reordered.first[0].value.as_deref(), Some("v2-0"));
}

#[test]
fn finds_a_room_seq_other_than_acknowledged() {
    let mut h = base();
    h.deliver_room("c1", &[1, 2]).deliver("c1", Some(4), "v3-0").deliver("c1", Some(5), "v5-0");
    h.deliver_room("c2", &[1, 2, 3, 4, 5]);
    let s = check(&h.events, &replicas(room_log(5)));
    assert_eq!(s.reordered.total, 1, "{}", verdict(&s));
    assert!(s.reordered.first[0].reason.contains("acknowledged at room_seq 3"));
    // v4 (offset 4) never came: lost; v3 came, at the wrong offset, so it is not lost.
    assert_eq!(s.lost.total, 1);
    assert_eq!(s.lost.first[0].value.as_deref(), Some("v4-0"));
}

#[test]
fn finds_an_unexpected_value() {
    let mut h = base();
    h.deliver_room("c1", &[1, 2, 3, 4, 5]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    h.deliver("c1", None, "v999-0");
    let s = check(&h.events, &replicas(room_log(5)));
    assert_eq!(counts(&s), [0, 0, 0, 1, 0]);
    assert_eq!(s.unexpected.first[0].reason, "never pushed");
}

#[test]
fn finds_a_push_to_another_room() {
    let mut h = base();
    h.invoke(6, PushKind::Room, "live://2").ok(6, 6, Some(1));
    h.deliver_room("c1", &[1, 2, 3, 4, 5]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    h.deliver("c1", Some(1), &val(6));
    let mut log = room_log(5);
    log.push(LogRecord { room: Some("live://2".into()), ..room_record(6, 1, &val(6)) });
    let s = check(&h.events, &replicas(log));
    assert_eq!(counts(&s), [0, 0, 0, 1, 0], "{}", verdict(&s));
    assert!(s.unexpected.first[0].reason.contains("live://2"));
}

#[test]
fn finds_a_failed_push_delivered() {
    let mut h = base();
    h.invoke(6, PushKind::Room, ROOM).fail(6);
    h.deliver_room("c1", &[1, 2, 3, 4, 5]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    h.deliver("c1", Some(6), &val(6));
    let s = check(&h.events, &replicas(room_log(5)));
    assert_eq!(counts(&s), [0, 0, 0, 1, 0], "{}", verdict(&s));
}

#[test]
fn finds_a_gap_of_an_indeterminate_push_that_committed() {
    let mut h = base();
    h.invoke(6, PushKind::Room, ROOM).info(6).room(7, 7);
    h.deliver_room("c1", &[1, 2, 3, 4, 5, 7]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    h.deliver("c2", Some(6), &val(6)).deliver("c2", Some(7), &val(7));
    let mut log = room_log(5);
    log.push(room_record(6, 6, &val(6)));
    log.push(room_record(7, 7, &val(7)));
    let s = check(&h.events, &replicas(log));
    assert_eq!(counts(&s), [0, 0, 0, 0, 1], "{}", verdict(&s));
    let gap = &s.gaps.first[0];
    assert_eq!(
        (gap.value.as_deref(), gap.client.as_deref(), gap.room_seq),
        (Some("v6-0"), Some("c1"), Some(6))
    );
}

#[test]
fn finds_a_gap_nothing_explains() {
    let mut h = base();
    h.room(6, 8); // offsets 6 and 7: nobody knows what they were
    h.deliver_room("c1", &[1, 2, 3, 4, 5]).deliver("c1", Some(8), &val(6));
    h.deliver_room("c2", &[1, 2, 3, 4, 5]).deliver("c2", Some(8), &val(6));
    let mut log = room_log(5);
    log.push(room_record(6, 8, &val(6)));
    let s = check(&h.events, &replicas(log));
    assert_eq!(counts(&s), [0, 0, 0, 0, 4], "{}", verdict(&s));
    assert_eq!(s.gaps.first.len(), 2);
    assert_eq!((s.gaps.first[0].room_seq, s.gaps.first[0].room_seq_end), (Some(6), Some(7)));
}

#[test]
fn an_unrecovered_gap_is_excused_not_lost() {
    let mut h = base();
    h.room(6, 6);
    h.deliver_room("c1", &[1, 2]).connected("c1", 4, true, false).deliver_room("c1", &[5, 6]);
    h.deliver_room("c2", &[1, 2, 3, 4, 5, 6]);
    let s = check(&h.events, &replicas(room_log(6)));
    assert!(s.valid, "{}", verdict(&s));
    assert_eq!((s.counts.resumes, s.counts.unrecovered), (1, 2));
}

#[test]
fn a_recovered_resume_must_continue_densely() {
    let mut h = base();
    h.deliver_room("c1", &[1, 2]).connected("c1", 5, true, true).deliver_room("c1", &[4, 5]);
    h.deliver_room("c2", &[1, 2, 3, 4, 5]);
    let s = check(&h.events, &replicas(room_log(5)));
    assert_eq!(counts(&s), [1, 0, 0, 0, 0], "{}", verdict(&s));
    assert_eq!(s.lost.first[0].room_seq, Some(3));
}

#[test]
fn an_indeterminate_push_may_be_delivered_once_not_twice() {
    let mut h = base();
    h.invoke(6, PushKind::Room, ROOM).info(6);
    h.deliver_room("c1", &[1, 2, 3, 4, 5, 6]).deliver_room("c2", &[1, 2, 3, 4, 5, 6]);
    let mut log = room_log(5);
    log.push(room_record(6, 6, &val(6)));
    let state = replicas(log);
    let s = check(&h.events, &state);
    assert!(s.valid, "{}", verdict(&s));
    h.deliver("c2", Some(6), &val(6));
    let s = check(&h.events, &state);
    assert_eq!(counts(&s), [0, 1, 0, 0, 0]);
}

#[test]
fn an_open_op_counts_as_indeterminate() {
    let mut h = base();
    h.invoke(6, PushKind::Room, ROOM);
    h.deliver_room("c1", &[1, 2, 3, 4, 5]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    let s = check(&h.events, &replicas(room_log(5)));
    assert!(s.valid, "{}", verdict(&s));
    assert_eq!(s.counts.ops["room"].info, 1);
}

#[test]
fn finds_a_mid_push_lost_by_a_client_connected_throughout() {
    let mut h = base();
    h.deliver_room("c1", &[1, 2, 3, 4, 5]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    h.at(5000.0).invoke(6, PushKind::Mid, "1").ok(6, 6, None);
    let s = check(&h.events, &replicas(room_log(5)));
    assert_eq!(counts(&s), [1, 0, 0, 0, 0], "{}", verdict(&s));
    assert_eq!(
        (s.lost.first[0].value.as_deref(), s.lost.first[0].client.as_deref()),
        (Some("v6-0"), Some("c1"))
    );
}

#[test]
fn a_mid_push_is_not_owed_to_a_client_that_resumed() {
    let mut h = base();
    h.deliver_room("c1", &[1, 2, 3, 4, 5]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    h.at(5000.0).invoke(6, PushKind::Mid, "1").ok(6, 6, None).connected("c1", 5, true, true);
    // Nor to one that connected just before the push.
    h.client("c3", 3).connected("c3", 5, false, false).invoke(7, PushKind::Mid, "3").ok(7, 7, None);
    let s = check(&h.events, &replicas(room_log(5)));
    assert!(s.valid, "{}", verdict(&s));
}

#[test]
fn finds_a_key_push_delivered_to_another_client_and_twice() {
    let mut h = base();
    h.deliver_room("c1", &[1, 2, 3, 4, 5]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    h.invoke(6, PushKind::Key, "key-c2").ok(6, 6, None);
    h.deliver("c2", None, &val(6)).deliver("c2", None, &val(6)).deliver("c1", None, &val(6));
    let s = check(&h.events, &replicas(room_log(5)));
    assert_eq!(counts(&s), [0, 1, 0, 1, 0], "{}", verdict(&s));
    assert_eq!(s.unexpected.first[0].client.as_deref(), Some("c1"));
}

#[test]
fn a_client_that_gave_up_is_owed_nothing_after() {
    let mut h = base();
    h.deliver_room("c1", &[1, 2]).gone("c1").deliver_room("c2", &[1, 2, 3, 4, 5]);
    let s = check(&h.events, &replicas(room_log(5)));
    assert!(s.valid, "{}", verdict(&s));
}

#[test]
fn unsafe_mode_matches_by_value() {
    // No room offsets anywhere: acknowledged pushes after the connect are owed by value.
    let mut h = H::default();
    h.client("c1", 1).connected("c1", 0, false, false);
    for op in 1..=3 {
        h.invoke(op, PushKind::Room, ROOM).ok(op, op, Some(0));
    }
    h.deliver("c1", None, &val(1)).deliver("c1", None, &val(3));
    let log = (1..=3).map(|i| LogRecord { room_seq: None, ..room_record(i, 0, &val(i)) }).collect();
    let s = check(&h.events, &replicas(log));
    assert_eq!(counts(&s), [1, 0, 0, 0, 0], "{}", verdict(&s));
    assert_eq!(s.lost.first[0].value.as_deref(), Some("v2-0"));
}

#[test]
fn finds_replicas_disagreeing() {
    let (h, mut state) = clean_history();
    state.replicas[2].records[3].body = "v77-0".into();
    let s = check(&h.events, &state);
    assert!(!s.valid && !s.replicas.agree);
    let d = &s.replicas.divergences[0];
    assert_eq!((d.node.as_str(), d.reference.as_str(), d.seq), ("n3", "n1", Some(4)));
    assert_eq!(d.record.as_ref().map(|r| r.body.as_str()), Some("v77-0"));
    assert_eq!(d.reference_record.as_ref().map(|r| r.body.as_str()), Some("v4-0"));
    assert!(verdict(&s).contains("replicas disagree"));

    let (h, mut state) = clean_history();
    state.replicas[1].records.pop();
    state.replicas[1].last_seq -= 1;
    state.replicas[1].job_offset = Some(state.replicas[1].last_seq);
    let s = check(&h.events, &state);
    assert!(!s.valid);
    assert!(s.replicas.divergences[0].reason.contains("missing"));
}

#[test]
fn a_replica_with_an_error_is_invalid() {
    let (h, mut state) = clean_history();
    state.replicas[1] =
        Replica { node: "n2".into(), error: Some("connection refused".into()), ..Replica::default() };
    let s = check(&h.events, &state);
    assert!(!s.valid && !s.replicas.agree);
    assert_eq!(s.replicas.errors[0].node, "n2");
}

#[test]
fn finds_a_job_behind() {
    let (h, mut state) = clean_history();
    state.replicas[0].job_offset = Some(state.replicas[0].last_seq - 2);
    let s = check(&h.events, &state);
    assert!(!s.valid && s.replicas.agree && !s.replicas.jobs_caught_up);
    assert_eq!(s.replicas.jobs_behind[0].node, "n1");
    assert!(verdict(&s).contains("jobs behind"));
}

#[test]
fn finds_log_anomalies() {
    let mut h = base();
    h.invoke(6, PushKind::Room, ROOM).fail(6);
    h.deliver_room("c1", &[1, 2, 3, 4, 5]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    // v5 missing from the log (lost), v4 logged twice (duplicated), a failed push and a
    // value never pushed logged (unexpected); a non-harness body and a kick are ignored.
    let mut log = room_log(4);
    log.push(room_record(5, 5, &val(4)));
    log.push(room_record(6, 6, &val(6)));
    log.push(room_record(7, 7, "v55-1"));
    log.push(room_record(8, 8, "hello from the web demo"));
    log.push(LogRecord { kind: "kick".into(), ..keys_record(9, "n1", "v56-1") });
    let s = check(&h.events, &replicas(log));
    assert_eq!(s.lost.total, 1, "{}", verdict(&s));
    assert_eq!(s.lost.first[0].node.as_deref(), Some("n1"));
    assert_eq!(s.duplicated.total, 1);
    assert_eq!(s.unexpected.total, 2);
    // Log offsets 6..8 hold what no client should or could have had: gaps for both clients.
    assert!(s.gaps.total > 0);
}

#[test]
fn a_key_push_may_be_logged_once_per_comet() {
    let mut h = base();
    h.deliver_room("c1", &[1, 2, 3, 4, 5]).deliver_room("c2", &[1, 2, 3, 4, 5]);
    h.invoke(6, PushKind::Mid, "9").ok(6, 6, None);
    let mut log = room_log(5);
    log.push(keys_record(6, "n1", &val(6)));
    log.push(keys_record(7, "n2", &val(6)));
    let s = check(&h.events, &replicas(log.clone()));
    assert!(s.valid, "{}", verdict(&s));
    log.push(keys_record(8, "n2", &val(6)));
    let s = check(&h.events, &replicas(log));
    assert_eq!(counts(&s), [0, 1, 0, 0, 0]);
}

#[test]
fn no_replica_read_is_not_valid() {
    let (h, _) = clean_history();
    let s = check(&h.events, &FinalState::default());
    assert!(!s.valid);
    assert!(s.notes.iter().any(|n| n.contains("no replica")));
}

#[test]
fn measures_availability() {
    let mut h = H::default();
    h.client("c1", 1).connected("c1", 0, false, false);
    h.at(0.0).invoke(1, PushKind::Room, ROOM).at(20.0).ok(1, 1, Some(1));
    h.at(1000.0).nemesis(Phase::Start, "partition", "n1|n2,n3").leader("n2", 2);
    h.at(1100.0).invoke(2, PushKind::Room, ROOM).at(4100.0).info(2);
    h.at(4200.0).invoke(3, PushKind::Room, ROOM).at(4300.0).ok(3, 3, Some(3));
    h.at(4500.0).nemesis(Phase::Stop, "partition", "n1|n2,n3");
    h.at(6000.0).nemesis(Phase::Start, "kill", "n2");
    h.at(6100.0).deliver("c1", Some(1), &val(1)).deliver("c1", Some(3), &val(3));
    let mut log = room_log(1);
    log.push(room_record(3, 3, &val(3)));
    let s = check(&h.events, &replicas(log));
    let a = &s.availability;
    assert_eq!(a.per_second.len(), 7);
    assert_eq!((a.per_second[0].ok, a.per_second[0].p50_ms), (1, Some(20.0)));
    assert_eq!((a.per_second[4].ok, a.per_second[4].info, a.per_second[4].max_ms), (1, 1, Some(100.0)));
    assert_eq!(a.latency_max_ms, Some(100.0));
    assert_eq!(a.unavailable.len(), 1);
    assert_eq!((a.unavailable[0].from_ms, a.unavailable[0].to_ms), (1100.0, 4300.0));
    assert_eq!(a.faults.len(), 2);
    assert_eq!((a.faults[0].stop_ms, a.faults[0].failover_ms), (Some(4500.0), Some(3300.0)));
    assert_eq!((a.faults[1].stop_ms, a.faults[1].failover_ms), (None, None));
    assert_eq!(a.failover_by_kind["partition"].p50_ms, Some(3300.0));
    assert_eq!(a.failover_by_kind["kill"].recovered, 0);
    assert_eq!((a.failover_p50_ms, a.failover_max_ms), (Some(3300.0), Some(3300.0)));
    // The offset-2 push was indeterminate and nobody got it: a gap, not a loss.
    assert_eq!(counts(&s), [0, 0, 0, 0, 1]);
    assert_eq!(s.counts.faults["partition"], 1);
}

#[test]
fn counts_leader_changes() {
    let mut h = H::default();
    h.leader("n1", 1)
        .leader("n1", 1)
        .leader("n2", 2)
        .ev(What::Leader { node: None, term: 2 })
        .leader("n2", 2);
    h.leader("n1", 3);
    let s = check(&h.events, &replicas(Vec::new()));
    assert_eq!(s.counts.leader_changes, 2);
}

#[test]
fn recognises_harness_values() {
    assert!(is_harness_value("v12-3"));
    assert!(is_harness_value("v0-"));
    assert!(!is_harness_value("v-1"));
    assert!(!is_harness_value("v12"));
    assert!(!is_harness_value("x12-3"));
    assert!(!is_harness_value("hello"));
    assert!(!is_harness_value(""));
}

#[test]
fn summary_and_final_state_round_trip_through_json() {
    let (h, state) = clean_history();
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(serde_json::from_str::<FinalState>(&json).unwrap(), state);
    let mut h2 = base();
    h2.deliver_room("c1", &[1, 2]);
    for s in [check(&h.events, &state), check(&h2.events, &state)] {
        let json = serde_json::to_string_pretty(&s).unwrap();
        assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), s);
    }
}
