//! Writes the seed corpora in corpus/<target>/: a few small, valid (and a few nearly valid)
//! inputs per fuzz target, in each target's input format (see the targets' opening comments).
//! Run from net/fuzz after changing a wire format: `cargo run --example seeds`.
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use goim_net::packet::{encode_batch, op, Packet};
use goim_net::quic::encode_frame;
use goim_net::rpc::logic::{AuthBody, CometInfo, Connected, LogicReply, LogicRequest, LogicResult};
use goim_net::rpc::push::{PushAck, PushBatch};
use goim_net::rpc::tail::{TailBatch, TailRequest};
use goim_net::rpc::{PushRecord, PushTarget, RpcError, Service};
use goim_raft::command::{Push, PushTo, Reply, Request, Tick};
use goim_raft::membership::MembershipChange;
use goim_raft::network::{LeaderOp, LeaderReply, RaftRpc, RaftRpcReply, To, WriteError};
use goim_raft::TypeConfig;
use openraft::error::{Fatal, RaftError};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::{
    AnyError, BasicNode, CommittedLeaderId, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, Membership,
    StorageError, StorageIOError, Vote,
};
use serde::Serialize;

const JWT: &str = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.\
                   eyJtaWQiOjEyMywia2V5IjoiazEiLCJyb29tcyI6WyJsaXZlOi8vMTAwMCJdLCJleHAiOjQxMDI0NDQ4MDB9.\
                   c2lnbmF0dXJlLW5vdC12YWxpZA";

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).expect("corpus dir");
    fs::write(dir.join(name), bytes).expect("seed written");
}

fn with_ctl(ctl: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![ctl];
    v.extend_from_slice(rest);
    v
}

fn auth_json() -> String {
    r#"{"mid":123,"key":"","room_id":"live://1000","platform":"web","accepts":[1000,1001,1002]}"#.into()
}

fn packet_seeds() {
    let auth = Packet::new(op::AUTH, 1, auth_json()).to_bytes();
    let heartbeat = Packet::new(op::HEARTBEAT, 2, "").to_bytes();
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        ("auth_whole", 0x0f, auth.to_vec()),
        ("auth_bytewise", 0x00, auth.to_vec()),
        ("heartbeat", 0x0f, heartbeat.to_vec()),
        ("send_msg", 0x03, Packet::new(op::SEND_MSG, 3, "hello").to_bytes().to_vec()),
        ("change_room", 0x05, Packet::new(op::CHANGE_ROOM, 4, "live://1001").to_bytes().to_vec()),
        ("sub", 0x0f, Packet::new(op::SUB, 5, "1000,1001").to_bytes().to_vec()),
        ("batch", 0x07, {
            let inner =
                [Packet::new(1000, 1, "a"), Packet::new(1001, 2, ""), Packet::new(1000, 3, "room msg")];
            encode_batch(&inner).to_vec()
        }),
        ("auth_then_heartbeats", 0x02, [&auth[..], &heartbeat[..], &heartbeat[..]].concat()),
        ("truncated", 0x0f, auth[..auth.len() - 3].to_vec()),
        ("bad_header_len", 0x0f, {
            let mut v = heartbeat.to_vec();
            v[5] = 20;
            v
        }),
        ("body_over_small_max", 0x8f, Packet::new(1000, 0, vec![b'x'; 40]).to_bytes().to_vec()),
    ];
    for (name, ctl, stream) in cases {
        write("packet", name, &with_ctl(ctl, &stream));
    }
}

/// A client frame: FIN, `opcode`, masked `payload` (clients must mask).
fn ws_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut v = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => v.push(0x80 | n as u8),
        n => {
            v.push(0x80 | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    v
}

fn ws_seeds() {
    const BINARY: u8 = 2;
    const TEXT: u8 = 1;
    const CONTINUATION: u8 = 0;
    const CLOSE: u8 = 8;
    const PING: u8 = 9;
    const PONG: u8 = 10;
    let upgrade = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:3102\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes()
    };
    let auth = Packet::new(op::AUTH, 1, auth_json()).to_bytes();
    let heartbeat = Packet::new(op::HEARTBEAT, 2, "").to_bytes();
    let big = Packet::new(op::SEND_MSG, 3, vec![b'm'; 200]).to_bytes();
    let session =
        [ws_frame(true, BINARY, &auth), ws_frame(true, BINARY, &heartbeat), ws_frame(true, CLOSE, &[3, 232])]
            .concat();
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        ("upgrade_auth_heartbeat_close", 0x01, [upgrade("/sub"), session.clone()].concat()),
        ("upgrade_wrong_path", 0x01, [upgrade("/other"), session.clone()].concat()),
        ("frames_whole", 0x00, session.clone()),
        ("frames_in_3_byte_reads", 3 << 1, session),
        ("text_heartbeat", 0x00, ws_frame(true, TEXT, &heartbeat)),
        (
            "ping_pong",
            0x00,
            [ws_frame(true, PING, b"p"), ws_frame(true, PONG, b""), ws_frame(true, BINARY, &heartbeat)]
                .concat(),
        ),
        (
            "fragmented",
            0x00,
            [ws_frame(false, BINARY, &big[..100]), ws_frame(true, CONTINUATION, &big[100..])].concat(),
        ),
        ("extended_length", 0x00, ws_frame(true, BINARY, &big)),
        ("over_small_max", 0x80, ws_frame(true, BINARY, &big)),
    ];
    for (name, ctl, stream) in cases {
        write("ws_frames", name, &with_ctl(ctl, &stream));
    }
}

fn auth_seeds() {
    let jwt = format!(
        r#"{{"mid":123,"key":"k1","room_id":"live://1000","platform":"ios","accepts":[1000],"token":"{JWT}"}}"#
    );
    let cases: Vec<(&str, String)> = vec![
        ("auth", auth_json()),
        ("auth_jwt", jwt),
        (
            "auth_resume",
            r#"{"mid":7,"key":"k7","room_id":"live://1000","room_seq":41,"epoch":"18c2f0a1"}"#.into(),
        ),
        (
            "auth_escapes",
            r#"{"mid":-1,"key":"\u00e9\ud83d\ude00","accepts":[],"token":null,"x":{"y":[1,2]}}"#.into(),
        ),
        (
            "change_room_json",
            format!(r#"{{"room_id":"live://1001","room_seq":3,"epoch":"1a","token":"{JWT}"}}"#),
        ),
        ("change_room_bare", "live://1001".into()),
        ("ops", "1000, 1001,1002".into()),
    ];
    for (name, body) in cases {
        write("auth_json", name, body.as_bytes());
    }
}

fn query_seeds() {
    // Limits: 5 targets; keys up to 16 bytes, rooms up to 32 (see the target).
    let limits = [5u8, 0x44];
    let cases = [
        ("push_mids", "operation=1000&mids=1&mids=2,3"),
        ("push_keys", "operation=1000&keys=a1b2c3,d4e5&keys=x"),
        ("push_room", "operation=1000&type=live&room=1000"),
        ("push_all", "operation=1000&speed=2"),
        ("push_encoded", "operation=%31000&keys=a+b%2Cc&mids=%2D7"),
        ("online_top", "type=live&limit=20"),
        ("online_room", "type=live&rooms=1000,1001"),
        ("log", "from=1&limit=100&partition=0"),
        ("history", "type=live&room=1000&since=41&limit=100"),
        ("cluster_add", "id=2&addr=127.0.0.1%3A3119"),
    ];
    for (name, query) in cases {
        write("http_query", name, &[&limits[..], query.as_bytes()].concat());
    }
}

fn frame(value: &(impl Serialize + ?Sized)) -> Vec<u8> {
    encode_frame(value).expect("a seed value encodes")
}

fn rpc(name: &str, service: Service, reply: bool, frames: &[Vec<u8>]) {
    let ctl = service as u8 | if reply { 0x80 } else { 0 };
    write("rpc", name, &with_ctl(ctl, &frames.concat()));
}

fn record(seq: u64, target: PushTarget) -> PushRecord {
    PushRecord { partition: 0, seq, ts_ms: 1_764_547_200_000, target, op: 1000, body: "hello".into() }
}

fn push(id: &str, to: PushTo) -> Request {
    Request::Push(Push {
        id: id.into(),
        to,
        op: 1000,
        body: "hi".into(),
        ts_ms: 1_764_547_200_000,
        room_keep: 0,
    })
}

/// An error with a cause, for a storage error with a chain of sources (openraft's `AnyError`).
#[derive(Debug)]
struct Caused(&'static str, Option<Box<Caused>>);

impl std::fmt::Display for Caused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Caused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.1.as_deref().map(|c| c as _)
    }
}

fn disk_full() -> Caused {
    Caused("flush log", Some(Box::new(Caused("write", Some(Box::new(Caused("no space left", None)))))))
}

fn rpc_seeds() {
    let comet = CometInfo {
        id: "comet-1".into(),
        tcp_addr: "127.0.0.1:3101".into(),
        ws_addr: "127.0.0.1:3102".into(),
        quic_addr: "127.0.0.1:3119".into(),
        zone: "z1".into(),
        weight: 10,
    };
    let auth = AuthBody {
        mid: 123,
        room_id: "live://1000".into(),
        accepts: vec![1000],
        token: Some(JWT.into()),
        ..AuthBody::default()
    };
    let requests = [
        LogicRequest::Connect { comet: "comet-1".into(), conn: 1, ip: "127.0.0.1".into(), auth },
        LogicRequest::RenewOnline {
            comet: comet.clone(),
            rooms: BTreeMap::from([("live://1000".into(), 3)]),
            conn_count: 3,
            ip_count: 1,
        },
        LogicRequest::Receive {
            id: "uplink/comet-1/1/0".into(),
            comet: "comet-1".into(),
            key: "k1".into(),
            mid: 123,
            op: 4,
            body: "up".into(),
        },
        LogicRequest::History { room: "live://1000".into(), after: 40, until: 50, limit: 100 },
    ];
    rpc("logic_requests", Service::Logic, false, &requests.iter().map(frame).collect::<Vec<_>>());
    let replies: [LogicResult; 3] = [
        Ok(LogicReply::Connected(Connected {
            key: "k1".into(),
            mid: 123,
            room_id: "live://1000".into(),
            accepts: vec![1000],
            heartbeat_secs: 30,
            room_seq: 41,
            epoch: 7,
        })),
        Ok(LogicReply::Comets(vec![comet])),
        Err(RpcError::Unavailable("no leader".into())),
    ];
    rpc("logic_replies", Service::Logic, true, &replies.iter().map(frame).collect::<Vec<_>>());

    let records = vec![
        record(1, PushTarget::Keys { comet: "comet-1".into(), keys: vec!["k1".into(), "k2".into()] }),
        record(2, PushTarget::Room { room: "live://1000".into(), room_seq: 42 }),
        record(3, PushTarget::All),
        record(4, PushTarget::Kick { comet: "comet-1".into(), key: "k1".into(), conn: 1 }),
    ];
    rpc(
        "tail_request",
        Service::Tail,
        false,
        &[frame(&TailRequest { partition: 0, from_seq: 1, max_batch: 512 })],
    );
    let tail = [TailBatch::Records(records.clone()), TailBatch::Trimmed { first_seq: 9 }];
    rpc("tail_batches", Service::Tail, true, &tail.iter().map(frame).collect::<Vec<_>>());
    rpc("push_batch", Service::Push, false, &[frame(&PushBatch { partition: 0, records, last_seq: 4 })]);
    rpc("push_ack", Service::Push, true, &[frame(&PushAck { partition: 0, last_seq: 4 })]);

    let vote = Vote::new_committed(2, 1);
    let log_id = |index| LogId::new(CommittedLeaderId::new(2, 1), index);
    let nodes =
        BTreeMap::from([(1, BasicNode::new("127.0.0.1:3119")), (2, BasicNode::new("127.0.0.1:3219"))]);
    let entries: Vec<Entry<TypeConfig>> = vec![
        Entry {
            log_id: log_id(5),
            payload: EntryPayload::Normal(push("p1", PushTo::Room("live://1000".into()))),
        },
        Entry {
            log_id: log_id(6),
            payload: EntryPayload::Normal(Request::Batch(vec![
                push("p2", PushTo::Mids(vec![1, 2])),
                Request::Tick(Tick { now_ms: 1_764_547_200_000 }),
            ])),
        },
        Entry {
            log_id: log_id(7),
            payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1, 2])], nodes)),
        },
        Entry { log_id: log_id(8), payload: EntryPayload::Blank },
    ];
    let raft_requests = [
        RaftRpc::VoteTo(To { node: 1, rpc: VoteRequest::new(Vote::new(3, 2), Some(log_id(8))) }),
        RaftRpc::AppendTo(To {
            node: 2,
            rpc: AppendEntriesRequest { vote, prev_log_id: Some(log_id(4)), entries, leader_commit: Some(log_id(4)) },
        }),
        RaftRpc::Leader(LeaderOp::Write(push("p3", PushTo::Keys(vec!["k1".into()])))),
        RaftRpc::Leader(LeaderOp::Membership(MembershipChange::Add { id: 3, addr: "127.0.0.1:3319".into() })),
    ];
    for (name, req) in
        ["raft_vote", "raft_append", "raft_leader_write", "raft_leader_membership"].iter().zip(&raft_requests)
    {
        rpc(name, Service::Raft, false, &[frame(req)]);
    }
    let raft_replies = [
        RaftRpcReply::Vote(Ok(VoteResponse::new(Vote::new(3, 2), Some(log_id(8)), true))),
        RaftRpcReply::Append(Ok(AppendEntriesResponse::Success)),
        RaftRpcReply::Leader(Ok(LeaderReply::Write(Reply::Batch(vec![Reply::Pushed {
            seq: 9,
            room_seq: 3,
        }])))),
        RaftRpcReply::Leader(Err(WriteError::ForwardToLeader(1, "127.0.0.1:3119".into()))),
        RaftRpcReply::Append(Err(RaftError::Fatal(Fatal::StorageError(StorageError::IO {
            source: StorageIOError::new(ErrorSubject::Store, ErrorVerb::Write, AnyError::new(&disk_full())),
        })))),
    ];
    rpc("raft_replies", Service::Raft, true, &raft_replies.iter().map(frame).collect::<Vec<_>>());

    // A forwarded write of 64 nested batches: RaftRpc, LeaderOp and two levels a batch take
    // one level past `serial::MAX_DEPTH` (refused); deeper ones overflowed the stack before the
    // bound (the crash in docs/SECURITY.md).
    let mut nested = Request::Batch(vec![]);
    for _ in 1..64 {
        nested = Request::Batch(vec![nested]);
    }
    rpc("raft_nested_batch", Service::Raft, false, &[frame(&RaftRpc::Leader(LeaderOp::Write(nested)))]);
}

fn main() {
    packet_seeds();
    ws_seeds();
    auth_seeds();
    query_seeds();
    rpc_seeds();
}
