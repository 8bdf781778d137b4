//! The TCP transport's framing: a tokio-util codec over the sans-IO `decode`, so a
//! `Framed<TcpStream, PacketCodec>` reads and writes goim packets.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::frame::{self, take_packet, Packet, PacketError, DEFAULT_MAX_BODY, MAX_PACK_LEN};

/// Decodes packets whose body is at most `max_body`; encodes `Packet`s, and `Bytes` that
/// already hold encoded frames (written as-is, e.g. a push encoded once for many sockets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketCodec {
    max_body: usize,
}

impl PacketCodec {
    pub fn new(max_body: usize) -> Self {
        PacketCodec { max_body }
    }

    pub fn max_body(&self) -> usize {
        self.max_body
    }
}

impl Default for PacketCodec {
    fn default() -> Self {
        PacketCodec::new(DEFAULT_MAX_BODY)
    }
}

impl Decoder for PacketCodec {
    type Item = Packet;
    type Error = PacketError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, PacketError> {
        frame::decode(buf, self.max_body)
    }

    /// At end of stream, leftover bytes are a packet cut short: `Truncated`.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, PacketError> {
        if let Some(packet) = self.decode(buf)? {
            return Ok(Some(packet));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        take_packet(&mut buf.split().freeze(), self.max_body).map(Some)
    }
}

impl Encoder<Packet> for PacketCodec {
    type Error = PacketError;

    fn encode(&mut self, packet: Packet, dst: &mut BytesMut) -> Result<(), PacketError> {
        <Self as Encoder<&Packet>>::encode(self, &packet, dst)
    }
}

impl Encoder<&Packet> for PacketCodec {
    type Error = PacketError;

    fn encode(&mut self, packet: &Packet, dst: &mut BytesMut) -> Result<(), PacketError> {
        if packet.encoded_len() > MAX_PACK_LEN {
            return Err(PacketError::TooLongToEncode(packet.encoded_len()));
        }
        packet.encode(dst);
        Ok(())
    }
}

impl Encoder<Bytes> for PacketCodec {
    type Error = PacketError;

    fn encode(&mut self, frames: Bytes, dst: &mut BytesMut) -> Result<(), PacketError> {
        dst.extend_from_slice(&frames);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio_util::codec::{FramedRead, FramedWrite};

    #[test]
    fn default_uses_goim_max_body() {
        assert_eq!(PacketCodec::default().max_body(), DEFAULT_MAX_BODY);
        assert_eq!(PacketCodec::new(9).max_body(), 9);
    }

    #[test]
    fn decodes_with_its_max_body() {
        let wire = Packet::new(1000, 0, vec![0u8; 5]).to_bytes();
        let mut codec = PacketCodec::new(4);
        let err = codec.decode(&mut BytesMut::from(&wire[..])).unwrap_err();
        assert!(matches!(err, PacketError::PackLenTooLarge { pack_len: 21, .. }));
    }

    #[test]
    fn eof_inside_a_packet_is_truncated() {
        let wire = Packet::new(1000, 0, "body").to_bytes();
        let mut codec = PacketCodec::default();
        let mut buf = BytesMut::from(&wire[..17]);
        let err = codec.decode_eof(&mut buf).unwrap_err();
        assert!(matches!(err, PacketError::Truncated { need: 20, have: 17 }));
        let mut buf = BytesMut::from(&wire[..3]);
        let err = codec.decode_eof(&mut buf).unwrap_err();
        assert!(matches!(err, PacketError::Truncated { need: 16, have: 3 }));
        assert_eq!(codec.decode_eof(&mut BytesMut::new()).unwrap(), None);
    }

    #[tokio::test]
    async fn framed_round_trip_over_a_pipe() {
        let (client, server) = tokio::io::duplex(4096);
        let mut writer = FramedWrite::new(client, PacketCodec::default());
        let mut reader = FramedRead::new(server, PacketCodec::default());
        let a = Packet::new(1000, 1, "first");
        let b = Packet::new(1001, 2, vec![7u8; 300]);
        let pre_encoded = Packet::new(1002, 3, "pre").to_bytes();
        writer.send(a.clone()).await.unwrap();
        writer.send(&b).await.unwrap();
        writer.send(pre_encoded.clone()).await.unwrap();
        drop(writer);
        assert_eq!(reader.next().await.unwrap().unwrap(), a);
        assert_eq!(reader.next().await.unwrap().unwrap(), b);
        let c = reader.next().await.unwrap().unwrap();
        assert_eq!(c.to_bytes(), pre_encoded);
        assert!(reader.next().await.is_none());
    }

    #[tokio::test]
    async fn framed_surfaces_a_truncated_tail() {
        let (mut client, server) = tokio::io::duplex(64);
        let wire = Packet::new(1000, 1, "cut").to_bytes();
        tokio::io::AsyncWriteExt::write_all(&mut client, &wire[..18]).await.unwrap();
        drop(client);
        let mut reader = FramedRead::new(server, PacketCodec::default());
        let err = reader.next().await.unwrap().unwrap_err();
        assert!(matches!(err, PacketError::Truncated { need: 19, have: 18 }));
    }
}
