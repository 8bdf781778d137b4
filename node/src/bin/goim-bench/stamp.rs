//! The send time every pushed message carries, so a subscriber can measure push → receive
//! without asking anyone: the body opens with the wall-clock nanoseconds since the UNIX
//! epoch as 16 lowercase hex digits, padded with `x` to the body size. goim and NATS get
//! byte-identical bodies; publisher and subscribers share this machine's clock.
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes of the stamp at the start of a body.
pub const STAMP_LEN: usize = 16;

/// Wall-clock nanoseconds since the UNIX epoch (0 if the clock is before it).
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Appends a body of `len` bytes (at least the stamp) stamped with `sent_ns` to `out`.
pub fn write_body(out: &mut Vec<u8>, sent_ns: u64, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..STAMP_LEN).rev() {
        out.push(HEX[((sent_ns >> (shift * 4)) & 0xf) as usize]);
    }
    out.extend(std::iter::repeat_n(b'x', len.saturating_sub(STAMP_LEN)));
}

/// The send time a body opens with, if it opens with a stamp.
pub fn read_stamp(body_prefix: &[u8]) -> Option<u64> {
    let digits = body_prefix.get(..STAMP_LEN)?;
    digits.iter().try_fold(0u64, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_and_pads_the_body() {
        let mut body = Vec::new();
        write_body(&mut body, 0x1234_5678_9abc_def0, 64);
        assert_eq!(body.len(), 64);
        assert_eq!(&body[..16], b"123456789abcdef0");
        assert_eq!(read_stamp(&body), Some(0x1234_5678_9abc_def0));
        assert_eq!(read_stamp(b"12345"), None);
        assert_eq!(read_stamp(b"zzzzzzzzzzzzzzzz"), None);
    }
}
