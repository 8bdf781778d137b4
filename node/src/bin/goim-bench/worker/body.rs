//! A message body as the stream walkers see it: skipped in place as it arrives, only its
//! first bytes kept (the send stamp, or enough of an error to show), whatever the reads
//! cut it into. Shared by the goim and NATS walkers.

/// Body bytes kept: the send stamp, or enough of an auth error to show it.
pub const PREFIX: usize = 64;

pub struct Body {
    /// Bytes still to come (the walker may count a trailer in, e.g. NATS's CRLF).
    left: usize,
    kept: [u8; PREFIX],
    have: usize,
    want: usize,
}

impl Default for Body {
    fn default() -> Self {
        Body { left: 0, kept: [0; PREFIX], have: 0, want: 0 }
    }
}

impl Body {
    /// A body of `len` bytes (`keep_of` of them its own, the rest a trailer) starts.
    pub fn start(&mut self, len: usize, keep_of: usize) {
        (self.left, self.have, self.want) = (len, 0, PREFIX.min(keep_of));
    }

    /// Takes what of `data` belongs to the body; true once the whole body has been seen.
    pub fn take(&mut self, data: &mut &[u8]) -> bool {
        let keep = (self.want - self.have).min(data.len());
        self.kept[self.have..self.have + keep].copy_from_slice(&data[..keep]);
        self.have += keep;
        let taken = keep + (self.left - keep).min(data.len() - keep);
        self.left -= taken;
        *data = &data[taken..];
        self.left == 0
    }

    /// The first bytes of the body (complete once `take` said so).
    pub fn prefix(&self) -> &[u8] {
        &self.kept[..self.have]
    }
}
