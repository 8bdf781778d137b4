//! `goim-bench disk`: how long the disk under a data directory takes to make a small write
//! durable (`pwrite` + `fdatasync` of a few hundred bytes into a preallocated file, one every
//! few milliseconds: what the Raft log's writer asks of it at light load). Every
//! acknowledged push waits for one such sync on a majority of voters, so this tail is a
//! floor under push → receive latency that no server on the same disk can go below
//! (docs/BENCHMARKS.md, "The disk's tail"; docs/OPERATIONS.md says what to look for).
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::hist::{Latencies, Percentiles};

/// Size of the preallocated file the writes cycle through (its length never changes, so a
/// sync carries no metadata).
const FILE_BYTES: u64 = 4 << 20;
/// How many of the slowest syncs are listed, with when they happened.
const WORST_LISTED: usize = 5;

#[derive(clap::Args, Debug)]
pub struct DiskArgs {
    /// A directory on the disk to measure (a node's --data-dir; default: the temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Milliseconds between two syncs.
    #[arg(long, default_value_t = 5)]
    every_ms: u64,
    /// Bytes written before each sync.
    #[arg(long, default_value_t = 256)]
    bytes: usize,
    /// Print one JSON object for the run on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
pub struct DiskResult {
    pub bench: &'static str,
    pub dir: String,
    pub bytes: usize,
    pub syncs: u64,
    pub seconds: f64,
    pub latency: Percentiles,
    /// Syncs that took longer than 10 ms and than 100 ms.
    pub over_10_ms: u64,
    pub over_100_ms: u64,
    /// The slowest syncs: (seconds into the run, milliseconds).
    pub worst: Vec<(f64, f64)>,
    pub unix_time: u64,
}

pub async fn run(args: DiskArgs) -> anyhow::Result<i32> {
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let (json, every_ms) = (args.json, args.every_ms);
    let result = tokio::task::spawn_blocking(move || probe(&dir, &args)).await??;
    let p = &result.latency;
    eprintln!(
        "pwrite of {} B + fdatasync in {}, one every {} ms, {:.1} s",
        result.bytes, result.dir, every_ms, result.seconds
    );
    eprintln!("{:<28}{:>12}", "syncs", result.syncs);
    for (name, v) in
        [("p50 ms", p.p50_ms), ("p99 ms", p.p99_ms), ("p99.9 ms", p.p999_ms), ("max ms", p.max_ms)]
    {
        eprintln!("{name:<28}{v:>12.3}");
    }
    eprintln!("{:<28}{:>12}", "over 10 ms", result.over_10_ms);
    eprintln!("{:<28}{:>12}", "over 100 ms", result.over_100_ms);
    for (at, ms) in &result.worst {
        eprintln!("  {ms:>8.1} ms at {at:>6.2} s");
    }
    if json {
        println!("{}", serde_json::to_string(&result)?);
    }
    Ok(0)
}

/// Removes the probe's file however the probe ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn probe(dir: &Path, args: &DiskArgs) -> anyhow::Result<DiskResult> {
    let scratch = Scratch(dir.join(format!("goim-bench-disk-{}", std::process::id())));
    let file = prepare(&scratch.0)?;
    let bytes = args.bytes.clamp(1, 64 << 10);
    let record = vec![0x5a_u8; bytes];
    let slots = FILE_BYTES / record.len() as u64;
    let until = Duration::try_from_secs_f64(args.seconds)?;
    let started = Instant::now();
    // Every sync: (seconds into the run, milliseconds it took).
    let mut syncs = Vec::<(f64, f64)>::new();
    while started.elapsed() < until {
        file.write_all_at(&record, (syncs.len() as u64 % slots) * record.len() as u64)?;
        let t = Instant::now();
        file.sync_data()?;
        let took = t.elapsed();
        syncs.push((started.elapsed().as_secs_f64(), took.as_secs_f64() * 1000.0));
        std::thread::sleep(Duration::from_millis(args.every_ms));
    }
    let mut latencies = Latencies::new();
    for (_, ms) in &syncs {
        latencies.record((ms * 1000.0) as u64);
    }
    let over = |ms: f64| syncs.iter().filter(|(_, took)| *took > ms).count() as u64;
    let (over_10_ms, over_100_ms) = (over(10.0), over(100.0));
    let count = syncs.len() as u64;
    syncs.sort_by(|a, b| b.1.total_cmp(&a.1));
    syncs.truncate(WORST_LISTED);
    Ok(DiskResult {
        bench: "disk",
        dir: dir.display().to_string(),
        bytes,
        syncs: count,
        seconds: started.elapsed().as_secs_f64(),
        latency: latencies.percentiles(),
        over_10_ms,
        over_100_ms,
        worst: syncs,
        unix_time: crate::stamp::now_ns() / 1_000_000_000,
    })
}

/// The probe's file, written whole and synced, so later writes allocate nothing.
fn prepare(path: &Path) -> anyhow::Result<File> {
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
    let zeros = vec![0u8; 1 << 20];
    for chunk in 0..FILE_BYTES / zeros.len() as u64 {
        file.write_all_at(&zeros, chunk * zeros.len() as u64)?;
    }
    file.sync_all()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_the_directory_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let args = DiskArgs { dir: None, seconds: 0.2, every_ms: 1, bytes: 100, json: false };
        let result = probe(dir.path(), &args).unwrap();
        assert!(result.syncs >= 5, "{result:?}");
        assert!(result.latency.max_ms > 0.0 && result.latency.p50_ms <= result.latency.max_ms, "{result:?}");
        assert!(!result.worst.is_empty() && result.worst.len() <= WORST_LISTED);
        assert!(result.worst.windows(2).all(|w| w[0].1 >= w[1].1), "slowest first: {:?}", result.worst);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the probe's file is removed");
    }
}
