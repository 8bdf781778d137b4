//! A snapshot file written out as it grows. Left to the kernel, a build's tens of MB sit
//! dirty until its final fsync writes them in one burst, and the Raft log's fsyncs queue
//! behind that burst on the same disk: acks stall while a snapshot is saved. Starting the
//! writeback of each MiB as soon as it is written, after waiting for the MiB before it
//! (`sync_file_range`, the way databases bound their background writes), spreads it over
//! the build and leaves the final fsync little to do.
//!
//! A build may also be held to a rate (`--snapshot-mb-per-s`): it then sleeps after a step
//! that came early. Reading and encoding the whole state costs CPU in proportion to what is
//! written, so the rate bounds the share of the cores a build takes from the push path at
//! any moment, at the price of a longer build (the log is purged when it ends).
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Bytes between writebacks.
const STEP: u64 = 1 << 20;

pub(crate) struct PacedFile {
    file: File,
    /// At most this many bytes a second (0: unlimited), counted from `began`.
    bytes_per_s: u64,
    began: Instant,
    written: u64,
    /// Everything before this offset has had its writeback started.
    started: u64,
    /// Everything before this offset has been written back.
    settled: u64,
}

impl PacedFile {
    pub(crate) fn new(file: File, bytes_per_s: u64) -> PacedFile {
        PacedFile { file, bytes_per_s, began: Instant::now(), written: 0, started: 0, settled: 0 }
    }

    /// Sleeps until writing `written` bytes is on time for the rate.
    fn keep_to_rate(&self) {
        if self.bytes_per_s == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.written as f64 / self.bytes_per_s as f64);
        if let Some(early) = due.checked_sub(self.began.elapsed()) {
            std::thread::sleep(early);
        }
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
            self.keep_to_rate();
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
        let mut paced = PacedFile::new(File::create(&path).unwrap(), 0);
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

    #[test]
    fn a_rate_spreads_the_writes_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut paced = PacedFile::new(File::create(dir.path().join("f")).unwrap(), 20 << 20);
        let block = vec![7u8; 1 << 20];
        let began = Instant::now();
        for _ in 0..4 {
            paced.write_all(&block).unwrap();
        }
        // 4 MiB at 20 MiB/s: each step waits until it is due, the last until 0.2 s.
        assert!(began.elapsed() >= Duration::from_millis(195), "{:?}", began.elapsed());
        assert_eq!(paced.written, 4 << 20);
    }
}
