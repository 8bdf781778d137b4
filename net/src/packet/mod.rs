//! The goim v2 client wire protocol, sans-IO: the packet and its strict decoder, the
//! TCP stream codec, the one-packet-per-message WebSocket mapping, op-9 batches and the
//! bodies clients send (auth, room change, op lists). Nothing here touches a socket, so
//! every rule is unit-tested on plain bytes (and fuzzed: net/fuzz).

mod batch;
mod codec;
mod frame;
pub mod op;
mod ws;

pub use batch::{encode_batch, split_batch};
pub use codec::PacketCodec;
pub use frame::{decode, Packet, PacketError, DEFAULT_MAX_BODY, HEADER_LEN, MAX_PACK_LEN};
/// The bodies a client writes after the handshake (sans-IO parsers); they live in goim-types
/// because logic receives the auth body too.
pub use goim_types::auth;
pub use ws::{decode_ws, decode_ws_bytes, server_ws_config};
