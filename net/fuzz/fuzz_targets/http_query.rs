//! Logic's HTTP API query strings through `goim_net::api::Params`: every accessor the routes
//! use, under every parameter name they read, and the push routes' targets (keys, mids, room)
//! within limits taken from the input.
//!
//! Input: two bytes of limits (most targets, longest key and room), then the raw query (as
//! axum's `RawQuery` hands it over). Properties: list items are trimmed, non-empty and
//! comma-free; an accepted operation is not a protocol op; accepted targets keep the limits.
#![no_main]

use goim_net::api::{Params, TargetLimits};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "operation",
    "keys",
    "mids",
    "type",
    "room",
    "rooms",
    "speed",
    "limit",
    "from",
    "since",
    "partition",
    "id",
    "addr",
    "platform",
];

fuzz_target!(|data: &[u8]| {
    let [targets, lens, query @ ..] = data else {
        return;
    };
    let limits = TargetLimits {
        targets: usize::from(targets % 8),
        key_len: usize::from(lens & 0x0f) * 4,
        room_len: usize::from(lens >> 4) * 8,
    };
    let p = Params::parse(Some(String::from_utf8_lossy(query).into_owned()));

    for name in NAMES {
        if let Ok(v) = p.required(name) {
            assert!(!v.is_empty());
            assert_eq!(p.one(name), Some(v));
        }
        let _ = p.parsed::<u64>(name);
        let _ = p.parsed::<i64>(name);
        let _ = p.parsed::<u32>(name);
        let _ = p.parsed::<usize>(name);
        for item in p.list(name) {
            assert!(!item.is_empty() && !item.contains(',') && item.trim() == item, "{item:?}");
        }
    }
    if let Ok(op) = p.operation() {
        assert!(!(0..=17).contains(&op));
    }
    if let Ok(keys) = p.keys(&limits) {
        assert!(!keys.is_empty() && keys.len() <= limits.targets);
        assert!(keys.iter().all(|k| k.len() <= limits.key_len));
    }
    if let Ok(mids) = p.mids(&limits) {
        assert!(!mids.is_empty() && mids.len() <= limits.targets);
    }
    if let Ok(room) = p.room(&limits) {
        assert!(room.len() <= limits.room_len && room.contains("://"));
    }
});
