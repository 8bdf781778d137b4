//! The internal RPC decoder: what a node reads off a QUIC bi-stream, a `Service` byte then
//! length-prefixed `serial` frames (`quic::decode_frame`), decoded as each service's request
//! (server side) or reply (client side): Raft (`RaftRpc`/`RaftRpcReply`, openraft's messages
//! included), logic calls, the push-log tail and the job → comet push stream.
//!
//! Input: one byte (bits 0-2: the service byte as sent; bit 7: read replies, not requests),
//! then the stream. Properties: decoding is bounded (a length prefix past the limit is refused
//! before any allocation: -rss_limit_mb catches the rest) and every decoded value re-encodes
//! to no more bytes than it came from and decodes back to itself.
#![no_main]

use std::fmt::Debug;

use goim_net::quic::decode_frame;
use goim_net::rpc::logic::{LogicRequest, LogicResult};
use goim_net::rpc::push::{PushAck, PushBatch};
use goim_net::rpc::tail::{TailBatch, TailRequest};
use goim_net::rpc::Service;
use goim_net::serial;
use goim_raft::network::{RaftRpc, RaftRpcReply};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decodes frames of `T` until the stream ends or breaks, checking each.
fn frames<T: Serialize + DeserializeOwned + Debug>(mut stream: &[u8]) {
    while let Ok(Some((value, used))) = decode_frame::<T>(stream) {
        let again = serial::encode(&value).expect("a decoded value encodes");
        assert!(again.len() <= used - 4, "re-encoding grew");
        let back: T = serial::decode(&again).expect("its own encoding decodes");
        assert_eq!(format!("{back:?}"), format!("{value:?}"));
        stream = &stream[used..];
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let reply = ctl & 0x80 != 0;
    match (Service::from_byte(ctl & 0x07), reply) {
        (Some(Service::Raft), false) => frames::<RaftRpc>(stream),
        (Some(Service::Raft), true) => frames::<RaftRpcReply>(stream),
        (Some(Service::Logic), false) => frames::<LogicRequest>(stream),
        (Some(Service::Logic), true) => frames::<LogicResult>(stream),
        (Some(Service::Tail), false) => frames::<TailRequest>(stream),
        (Some(Service::Tail), true) => frames::<TailBatch>(stream),
        (Some(Service::Push), false) => frames::<PushBatch>(stream),
        (Some(Service::Push), true) => frames::<PushAck>(stream),
        (None, _) => {}
    }
});
