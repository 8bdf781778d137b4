//! What the bench reads about processes from /proc: CPU time (utime + stime) and resident
//! memory (VmRSS), for the servers it measures and for its own processes, so each figure is
//! the kernel's account and not an estimate.

/// Linux reports /proc/<pid>/stat times in USER_HZ ticks, which is 100 on every
/// architecture the kernel exposes to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) a process has used so far; None when it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime(14) stime(15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// Resident memory of a process in bytes; None when it is gone.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes in MiB, for reports.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// CPU seconds summed over `pids` (processes already gone count 0).
pub fn cpu_seconds_of(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&p| cpu_seconds(p)).sum()
}

/// Resident bytes summed over `pids`.
pub fn rss_bytes_of(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| rss_bytes(p)).sum()
}

/// CPU seconds the whole machine has been busy (every core, every process), from
/// /proc/stat's first line: (at normal priority or higher, niced). A run uses them to tell
/// how much went to processes other than the servers and itself; niced work (a fuzzer)
/// mostly fills what the others leave idle.
pub fn machine_busy_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> =
        stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let [user, nice, system, _idle, _iowait, irq, softirq, steal] = *ticks.get(..8)? else {
        return None;
    };
    let normal = user + system + irq + softirq + steal;
    Some((normal as f64 / TICKS_PER_SECOND, nice as f64 / TICKS_PER_SECOND))
}

/// The soft limit on open files of this process (children inherit it), if known.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// Whether this process runs as root (it may then install what it lacks).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        assert!(rss_bytes(me).unwrap_or(0) > 0);
        assert!(open_files_limit().unwrap_or(0) > 0);
        assert!(machine_busy_seconds().is_some_and(|(normal, _)| normal > 0.0));
    }
}
