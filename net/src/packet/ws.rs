//! The WebSocket transport's framing: one binary (or text) message is exactly one packet,
//! so the packLen must match the message length in both directions.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::frame::{take_packet, Packet, PacketError, HEADER_LEN};

/// tungstenite allocates (and zero-fills) its read buffer eagerly and keeps it for the
/// connection's life: keep it small, as client messages are (heartbeats, auth, room
/// changes); a larger message makes it grow to the message's size.
const SERVER_READ_BUFFER: usize = 512;
/// tungstenite's write buffer: frames collect here until it is this full (or flushed).
const SERVER_WRITE_BUFFER: usize = 128 * 1024;

/// The tungstenite config of a comet's client connection: incoming messages and frames no
/// larger than the largest packet, and a write buffer capped at two of the largest frames
/// the comet sends (pongs tungstenite queues by itself while the client does not read end
/// there: past the cap they replace each other, and a push that does not fit closes the
/// connection as a slow consumer). Shared by the comet and the `ws_frames` fuzz target.
pub fn server_ws_config(max_body: usize, max_out_frame: usize) -> WebSocketConfig {
    let max_message = HEADER_LEN.saturating_add(max_body);
    let max_frame_out = max_out_frame.max(max_message).saturating_add(16);
    WebSocketConfig::default()
        .read_buffer_size(SERVER_READ_BUFFER)
        .write_buffer_size(SERVER_WRITE_BUFFER)
        .max_write_buffer_size(SERVER_WRITE_BUFFER.saturating_add(max_frame_out.saturating_mul(2)))
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Decodes one WebSocket message as one packet: a packLen larger than the message is
/// `Truncated`, bytes past packLen are `TrailingBytes`. Copies the body; use
/// `decode_ws_bytes` when the message is already `Bytes`.
pub fn decode_ws(msg: &[u8], max_body: usize) -> Result<Packet, PacketError> {
    decode_ws_bytes(Bytes::copy_from_slice(msg), max_body)
}

/// `decode_ws` without the copy: the body shares the message's buffer.
pub fn decode_ws_bytes(mut msg: Bytes, max_body: usize) -> Result<Packet, PacketError> {
    let len = msg.len();
    let packet = take_packet(&mut msg, max_body)?;
    if !msg.is_empty() {
        return Err(PacketError::TrailingBytes { pack_len: packet.encoded_len(), len });
    }
    Ok(packet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{op, DEFAULT_MAX_BODY};

    #[test]
    fn one_message_is_one_packet() {
        let p = Packet::new(op::AUTH, 1, r#"{"mid":123}"#);
        assert_eq!(decode_ws(&p.to_bytes(), DEFAULT_MAX_BODY).unwrap(), p);
        assert_eq!(decode_ws_bytes(p.to_bytes(), DEFAULT_MAX_BODY).unwrap(), p);
    }

    #[test]
    fn text_message_bytes_decode_the_same() {
        let hb = Packet::new(op::HEARTBEAT, 1, "");
        let wire = hb.to_bytes();
        let text = std::str::from_utf8(&wire).unwrap();
        assert_eq!(decode_ws(text.as_bytes(), DEFAULT_MAX_BODY).unwrap(), hb);
    }

    #[test]
    fn pack_len_beyond_the_message_is_truncated() {
        let wire = Packet::new(1000, 0, "abcdef").to_bytes();
        let err = decode_ws(&wire[..20], DEFAULT_MAX_BODY).unwrap_err();
        assert!(matches!(err, PacketError::Truncated { need: 22, have: 20 }));
        let err = decode_ws(&wire[..8], DEFAULT_MAX_BODY).unwrap_err();
        assert!(matches!(err, PacketError::Truncated { need: 16, have: 8 }));
        let err = decode_ws(&[], DEFAULT_MAX_BODY).unwrap_err();
        assert!(matches!(err, PacketError::Truncated { need: 16, have: 0 }));
    }

    #[test]
    fn bytes_past_pack_len_are_refused() {
        let mut wire = Packet::new(1000, 0, "ab").to_bytes().to_vec();
        wire.push(0);
        let err = decode_ws(&wire, DEFAULT_MAX_BODY).unwrap_err();
        assert!(matches!(err, PacketError::TrailingBytes { pack_len: 18, len: 19 }));
        assert_eq!(err.to_string(), "message is 19 bytes but its packLen is 18");
    }

    #[test]
    fn header_checks_apply() {
        let wire = Packet::new(1000, 0, vec![0u8; 11]).to_bytes();
        assert!(matches!(decode_ws(&wire, 10), Err(PacketError::PackLenTooLarge { pack_len: 27, max: 10 })));
        let mut bad = wire.to_vec();
        bad[5] = 20;
        assert!(matches!(decode_ws(&bad, DEFAULT_MAX_BODY), Err(PacketError::HeaderLen(20))));
    }
}
