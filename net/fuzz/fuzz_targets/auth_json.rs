//! The bodies a client sends after connecting: op 7's auth JSON (`AuthBody::parse`), op 12's
//! room change (`ChangeRoom::parse`: a bare room id or JSON) and op 14/16's op lists
//! (`parse_ops`), all fed the same bytes.
//!
//! Properties: a parsed auth body survives JSON and the comet → logic RPC encoding unchanged;
//! a room change fails only in its JSON form, and a bare one is the body as text; parsed op
//! lists print and parse back to themselves.
#![no_main]

use goim_net::packet::auth::{parse_ops, AuthBody, ChangeRoom};
use goim_net::rpc::logic::LogicRequest;
use goim_net::serial;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(auth) = AuthBody::parse(data) {
        let json = serde_json::to_vec(&auth).expect("an auth body serialises");
        assert_eq!(AuthBody::parse(&json).expect("its own JSON parses"), auth);
        let req = LogicRequest::Connect { comet: "c".into(), conn: 1, ip: "127.0.0.1".into(), auth };
        let wire = serial::encode(&req).expect("a connect request encodes");
        assert_eq!(serial::decode::<LogicRequest>(&wire).expect("and decodes"), req);
    }

    match ChangeRoom::parse(data) {
        Ok(target) if ChangeRoom::is_json(data) => {
            let json = serde_json::to_vec(&target).expect("a room change serialises");
            assert_eq!(ChangeRoom::parse(&json).expect("its own JSON parses"), target);
        }
        Ok(target) => assert_eq!(target.room_id, String::from_utf8_lossy(data)),
        Err(_) => assert!(ChangeRoom::is_json(data), "a bare room id was refused"),
    }

    let ops = parse_ops(data);
    assert!(ops.len() <= data.len());
    let printed = ops.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    assert_eq!(parse_ops(printed.as_bytes()), ops);
});
