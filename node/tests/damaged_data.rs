//! Damaged data is refused, never served: a single-node `goim` whose sled files were damaged
//! while it was stopped (flipped bytes, a truncated file) exits with code 3 within seconds, its
//! stderr naming the file, and sled never panics. (Damage to unused parts of a file is harmless
//! and may start; the storage crate's tests cover that. Here every damage hits live data.)
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Node;

/// Copies the node's data dir so each kind of damage starts from the same files.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Runs `goim run` on `data_dir` and returns (exit code, stderr, how long it ran); panics if
/// it is still running after `within` (it would have started on damaged data).
fn run_until_exit(node: &Node, data_dir: &Path, within: Duration) -> (Option<i32>, String, Duration) {
    let stderr_path = data_dir.with_extension("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_goim"))
        .arg("run")
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .args(["--http-addr", &node.http.to_string()])
        .args(["--tcp-addr", &node.tcp.to_string()])
        .args(["--ws-addr", &node.ws.to_string()])
        .args(["--quic-addr", &node.quic.to_string()])
        .env("GOIM_LOG", "info,openraft=warn")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn goim");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "goim still running after {within:?} on damaged data; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code(), std::fs::read_to_string(&stderr_path).unwrap_or_default(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_single_node_refuses_to_start() {
    let mut node = Node::start(&[]).await;
    let url = format!("{}/goim/push/room?operation=1000&type=live&room=1", node.http());
    let client = reqwest::Client::new();
    // Enough data for sled to fill more than one 512 KiB segment of its log.
    let body = "x".repeat(8 << 10);
    for i in 0..300 {
        let reply: serde_json::Value =
            client.post(&url).body(format!("{i}-{body}")).send().await.unwrap().json().await.unwrap();
        assert_eq!(reply["code"], 0, "push {i}: {reply}");
    }
    node.kill9();

    let pristine = node.data_dir().to_path_buf();
    let log_file = pristine.join("db").join("db");
    let len = std::fs::metadata(&log_file).unwrap().len();
    eprintln!("sled log file after 300 pushes: {len} bytes");
    assert!(len > 1 << 20, "enough data to damage: {len} bytes");

    type Damage = fn(&Path, u64);
    let damages: [(&str, Damage); 3] = [
        ("flipped bytes", |file, len| {
            let mut bytes = std::fs::read(file).unwrap();
            for i in (4096..len as usize).step_by(4093) {
                bytes[i] ^= 0x5A;
            }
            std::fs::write(file, bytes).unwrap();
        }),
        ("truncated by 1 MiB and a bit", |file, len| {
            let cut = (1 << 20) + 3000;
            std::fs::OpenOptions::new().write(true).open(file).unwrap().set_len(len - cut).unwrap();
        }),
        ("truncated to half", |file, len| {
            std::fs::OpenOptions::new().write(true).open(file).unwrap().set_len(len / 2).unwrap();
        }),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (i, (what, damage)) in damages.iter().enumerate() {
        let dir: PathBuf = tmp.path().join(format!("data{i}"));
        copy_dir(&pristine, &dir);
        let damaged_file = dir.join("db").join("db");
        damage(&damaged_file, len);
        let (code, stderr, took) = run_until_exit(&node, &dir, Duration::from_secs(20));
        let refusal = stderr.lines().find(|l| l.starts_with("goim: data damaged:")).unwrap_or_default();
        eprintln!("{what}: exit {code:?} after {took:?}: {refusal}");
        assert_eq!(code, Some(3), "{what}: exit code 3 expected; stderr:\n{stderr}");
        assert!(
            refusal.contains(&damaged_file.display().to_string()),
            "{what}: the refusal names {}; stderr:\n{stderr}",
            damaged_file.display()
        );
        assert!(refusal.contains("goim cluster remove"), "{what}: says what to do: {refusal}");
        assert!(!stderr.contains("panicked at"), "{what}: no panic; stderr:\n{stderr}");
        assert!(took < Duration::from_secs(15), "{what}: refused in {took:?}");
    }

    // The undamaged files still start, with every acknowledged push.
    node.spawn().await;
    let out = Command::new(env!("CARGO_BIN_EXE_goim"))
        .args(["log", "tail", "--http", &node.http(), "--from", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 300, "every acknowledged push kept");
}

/// Flips every 4093rd byte past the first 4 KiB: damage that certainly hits live records.
fn flip_throughout(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    for i in (4096..bytes.len()).step_by(4093) {
        bytes[i] ^= 0x5A;
    }
    std::fs::write(file, bytes).unwrap();
}

/// Acceptance of `corrupt` in a cluster: a follower whose files were damaged while it was
/// stopped refuses to start (exit 3, naming the file), the other two keep every acknowledged
/// push, and the recovery its error message gives works: remove it, wipe it, add it back as
/// a new node, which copies everything from its peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_follower_refuses_and_is_replaced() {
    use common::cluster::{exclusive, wait_for, Cluster, Pusher, Role};

    let _one_at_a_time = exclusive().await;
    let mut c = Cluster::start(3, 0, 0).await;
    let pusher = Pusher::new(c.logic_urls());
    let path = "/goim/push/room?operation=1000&type=live&room=d";
    let body = "y".repeat(8 << 10);
    let mut acked = Vec::new();
    let push = |i: usize| {
        let pusher = pusher.clone();
        let body = format!("p{i}-{body}");
        async move { pusher.push(i % 3, path, &format!("p{i}"), &body).await }
    };
    for i in 0..200 {
        let out = push(i).await;
        assert!(out.acked.is_some(), "push {i}: {}", out.last_error);
        acked.push(out.body);
    }
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    let follower_id = c.logic[follower].id;
    c.wait_caught_up(follower, Duration::from_secs(20)).await;
    c.kill9(Role::Logic, follower);
    for i in 200..250 {
        let out = pusher.push(leader, path, &format!("p{i}"), &format!("p{i}")).await;
        assert!(out.acked.is_some(), "push {i}: {}", out.last_error);
        acked.push(out.body);
    }

    let damaged = c.logic[follower].data_dir().join("db").join("db");
    flip_throughout(&damaged);
    c.logic[follower].spawn();
    let status = c.logic[follower].wait_exit(Duration::from_secs(20)).await;
    let log = c.logic[follower].log();
    let refusal = log.lines().find(|l| l.starts_with("goim: data damaged:")).unwrap_or_default().to_string();
    eprintln!("damaged follower: {status}: {refusal}");
    assert_eq!(status.code(), Some(3), "log:\n{log}");
    assert!(refusal.contains(&damaged.display().to_string()), "names the file: {refusal}");
    assert!(!log.contains("panicked at"), "no panic:\n{log}");

    // Replace it as its message says: remove, wipe, start as a new node, add.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    c.cluster_cli(leader, &["remove", "--id", &follower_id.to_string()]);
    std::fs::remove_dir_all(c.logic[follower].data_dir()).unwrap();
    let new = c.spawn_joining_logic(4, &[]);
    let addr = c.logic[new].quic_addr();
    c.cluster_cli(leader, &["add", "--id", "4", "--addr", &addr]);
    c.logic[new].wait_healthy(Duration::from_secs(30)).await;
    c.wait_caught_up(new, Duration::from_secs(30)).await;

    // Every acknowledged push is on the survivors and on the new node, each once.
    for i in c.started_logic() {
        let url = c.logic[i].url();
        let bodies = wait_for(Duration::from_secs(20), "the whole push log", || async {
            let out = Command::new(env!("CARGO_BIN_EXE_goim"))
                .args(["log", "tail", "--http", url.trim_start_matches("http://"), "--from", "1"])
                .output()
                .ok()?;
            let bodies: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|r| r["body"].as_str().map(String::from))
                .collect();
            (bodies.len() >= acked.len()).then_some(bodies)
        })
        .await;
        assert_eq!(bodies, acked, "{}: every acknowledged push, in order, once", c.logic[i].name);
    }
}
