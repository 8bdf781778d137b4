//! A snapshot file written out as it grows. Left to the kernel, a build's tens of MB sit
//! dirty until its final fsync writes them in one burst, and the Raft log's fsyncs queue
//! behind that burst on the same disk: acks stall while a snapshot is saved. Starting the
//! writeback of each MiB as soon as it is written, after waiting for the MiB before it
//! (`sync_file_range`, the way databases bound their background writes), spreads it over
//! the build and leaves the final fsync little to do.
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;

/// Bytes between writebacks.
const STEP: u64 = 1 << 20;

pub(crate) struct PacedFile {
    file: File,
    written: u64,
    /// Everything before this offset has had its writeback started.
    started: u64,
    /// Everything before this offset has been written back.
    settled: u64,
}

impl PacedFile {
    pub(crate) fn new(file: File) -> PacedFile {
        PacedFile { file, written: 0, started: 0, settled: 0 }
    }

    /// The file, for the final fsync.
    pub(crate) fn into_file(self) -> File {
        self.file
    }

    /// Waits for the writeback started last time, then starts the writeback of what was
    /// written since: at most about two steps are dirty at a time.
    fn start_writeback(&mut self) {
        let fd = self.file.as_raw_fd();
        let range = |from: u64, to: u64| (from as libc::off64_t, (to - from) as libc::off64_t);
        // SAFETY: the fd is open for the life of `self.file`; the calls touch no memory.
        // A failure only loses the pacing (the final fsync still makes the file durable).
        unsafe {
            if self.started > self.settled {
                let (offset, len) = range(self.settled, self.started);
                let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER;
                let _ = libc::sync_file_range(fd, offset, len, wait);
            }
            let (offset, len) = range(self.started, self.written);
            let _ = libc::sync_file_range(fd, offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
        self.settled = self.started;
        self.started = self.written;
    }
}

impl Write for PacedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= STEP {
            self.start_writeback();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn what_is_written_is_the_file_and_writeback_follows_each_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut paced = PacedFile::new(File::create(&path).unwrap());
        let block: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        for _ in 0..10 {
            paced.write_all(&block).unwrap();
        }
        assert_eq!(paced.written, 3_000_000);
        assert_eq!(paced.started, 2_400_000, "writeback started after the 4th and the 8th write");
        assert_eq!(paced.settled, 1_200_000, "and the first step waited for at the second");
        paced.into_file().sync_all().unwrap();
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), 3_000_000);
        assert!(back.chunks(300_000).all(|c| c == block.as_slice()));
    }
}
