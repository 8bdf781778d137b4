//! The goim v2 operation codes (docs/PROTOCOL.md §1). Requests are even, their replies
//! are the next odd number; application ops (>= 1000 by convention) are the pusher's.

pub const HANDSHAKE: i32 = 0;
pub const HANDSHAKE_REPLY: i32 = 1;
pub const HEARTBEAT: i32 = 2;
pub const HEARTBEAT_REPLY: i32 = 3;
pub const SEND_MSG: i32 = 4;
pub const SEND_MSG_REPLY: i32 = 5;
pub const DISCONNECT_REPLY: i32 = 6;
pub const AUTH: i32 = 7;
pub const AUTH_REPLY: i32 = 8;
/// A batch: the body is inner packets back to back (see `encode_batch`).
pub const RAW: i32 = 9;
pub const PROTO_READY: i32 = 10;
pub const PROTO_FINISH: i32 = 11;
pub const CHANGE_ROOM: i32 = 12;
pub const CHANGE_ROOM_REPLY: i32 = 13;
pub const SUB: i32 = 14;
pub const SUB_REPLY: i32 = 15;
pub const UNSUB: i32 = 16;
pub const UNSUB_REPLY: i32 = 17;
