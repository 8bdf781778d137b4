//! The grouped layout (push-log chunks, room values with history tails and chunks) against
//! a plain model: random apply batches of room pushes, per-room windows and log trims, in
//! random places inside the batches, on a real sled tree; after every batch each read
//! (`pushlog::range`, `get`, `head`, `rooms::history`, `rooms::state`) must answer what the
//! model holds.
use std::collections::BTreeMap;

use goim_types::rpc::{PushRecord, PushTarget};

use super::{pushlog, rooms, Txn};

/// A small deterministic generator (xorshift64*), so a failure is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const ROOMS: [(&str, u64); 5] = [("a", 0), ("b", 5), ("c", 70), ("d", 130), ("e", 0)];

#[derive(Default)]
struct Model {
    /// Every record appended, by seq (index seq - 1).
    log: Vec<PushRecord>,
    first_seq: u64,
    /// Per room: (room_seq, seq) of every push.
    rooms: BTreeMap<&'static str, Vec<(u64, u64)>>,
}

impl Model {
    fn retained(&self) -> &[PushRecord] {
        &self.log[(self.first_seq - 1) as usize..]
    }

    /// The history a room serves: its window, minus what the log trimmed.
    fn history(&self, room: &str, keep: u64, after: u64, limit: usize) -> Vec<u64> {
        let entries = self.rooms.get(room).map(Vec::as_slice).unwrap_or_default();
        let last = entries.last().map_or(0, |e| e.0);
        let floor = if keep > 0 && last >= keep { last + 1 - keep } else { 0 };
        entries
            .iter()
            .filter(|(room_seq, seq)| *room_seq > after && *room_seq >= floor && *seq >= self.first_seq)
            .map(|(room_seq, _)| *room_seq)
            .take(limit)
            .collect()
    }
}

fn trim(txn: &mut Txn<'_>, model: &mut Model, rng: &mut Rng) {
    let last = model.log.len() as u64;
    let before = model.first_seq + rng.below(last + 2 - model.first_seq);
    pushlog::trim(txn, 0, before).unwrap();
    model.first_seq = model.first_seq.max(before.min(last + 1));
}

#[test]
fn random_batches_windows_and_trims_read_back_as_the_model() {
    let (_dir, tree) = super::test_tree();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut model = Model { first_seq: 1, ..Model::default() };
    for batch in 1..=120u64 {
        let mut txn = Txn::new(&tree, None);
        txn.log_index = batch;
        let pushes = match rng.below(4) {
            0 => 1,
            1 => rng.below(10) + 1,
            _ => rng.below(300) + 1,
        };
        let trim_at = (rng.below(5) == 0).then(|| rng.below(pushes + 1));
        let mut log = pushlog::Appender::open(&txn, 0).unwrap();
        for i in 0..pushes {
            if trim_at == Some(i) {
                log.finish(&mut txn).unwrap();
                trim(&mut txn, &mut model, &mut rng);
                log = pushlog::Appender::open(&txn, 0).unwrap();
            }
            let (room, keep) = ROOMS[rng.below(ROOMS.len() as u64) as usize];
            let room_seq = rooms::next_seq(&mut txn, room, batch).unwrap();
            let longest = if rng.below(10) == 0 { 4000 } else { 40 };
            let body = "x".repeat(rng.below(longest) as usize);
            let target = PushTarget::Room { room: room.into(), room_seq };
            let record =
                PushRecord { partition: 0, seq: 0, ts_ms: batch, target, op: 1000, body: body.into() };
            let seq = log.append(&mut txn, record.clone()).unwrap();
            rooms::index(&mut txn, room, room_seq, seq, keep).unwrap();
            model.log.push(PushRecord { seq, ..record });
            model.rooms.entry(room).or_default().push((room_seq, seq));
        }
        log.finish(&mut txn).unwrap();
        if trim_at == Some(pushes) {
            trim(&mut txn, &mut model, &mut rng);
        }
        txn.commit().unwrap();

        let view = Txn::new(&tree, None);
        let last = model.log.len() as u64;
        let head = pushlog::head(&view, 0).unwrap();
        assert_eq!((head.first_seq, head.last_seq), (model.first_seq, last), "head after batch {batch}");
        assert_eq!(
            pushlog::range(&view, 0, 1, usize::MAX).unwrap(),
            model.retained(),
            "whole log, batch {batch}"
        );
        for _ in 0..5 {
            let from = rng.below(last + 2);
            let limit = rng.below(700) as usize + 1;
            let want: Vec<&PushRecord> =
                model.retained().iter().filter(|r| r.seq >= from).take(limit).collect();
            let got = pushlog::range(&view, 0, from, limit).unwrap();
            assert_eq!(
                got.iter().collect::<Vec<_>>(),
                want,
                "range from {from} limit {limit}, batch {batch}"
            );
            let seq = rng.below(last + 2);
            let want = model.retained().iter().find(|r| r.seq == seq);
            assert_eq!(pushlog::get(&view, 0, seq).unwrap().as_ref(), want, "get {seq}, batch {batch}");
        }
        for (room, keep) in ROOMS {
            let entries = model.rooms.get(room).map(Vec::as_slice).unwrap_or_default();
            let last_room_seq = entries.last().map_or(0, |e| e.0);
            let state = rooms::state(&view, room).unwrap().map(|s| s.last_seq);
            assert_eq!(state.unwrap_or(0), last_room_seq, "room {room} offset, batch {batch}");
            let after = rng.below(last_room_seq + 2);
            let limit = rng.below(200) as usize + 1;
            let got = rooms::history(&view, room, after, u64::MAX, limit, usize::MAX).unwrap();
            let got: Vec<u64> = got.iter().filter_map(PushRecord::room_seq).collect();
            assert_eq!(
                got,
                model.history(room, keep, after, limit),
                "room {room} after {after}, batch {batch}"
            );
        }
    }
    assert!(model.first_seq > 1, "the run trimmed the log");
    assert!(tree.scan_prefix(b"plc/").count() < model.retained().len(), "records are grouped");
}
