//! `goim demo`: one command starts a whole cluster (3 logic + 2 comet + 1 job child
//! processes) whose `/cluster/overview` shows every node up, both comets and the job; a
//! child killed with `kill -9` shows down and is started again; SIGTERM stops the demo and
//! every child with it.
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::eventually;
use serde_json::Value;

/// A loopback address no other test uses: the demo binds the default ports moved per process.
const HOST: &str = "127.0.9.1";
const WITHIN: Duration = Duration::from_secs(60);

fn overview_nodes_up(data: &Value) -> Vec<(u64, bool)> {
    data["nodes"]
        .as_array()
        .map(|n| n.iter().map(|n| (n["node_id"].as_u64().unwrap_or(0), n["up"] == true)).collect())
        .unwrap_or_default()
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Stops the demo (and so its children) if the test fails midway.
struct StopOnDrop(u32);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.to_string()]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_starts_a_cluster_restarts_a_killed_node_and_stops_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_goim"))
        .args(["demo", "--host", HOST, "--restart-secs", "1", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start goim demo");
    let _stop = StopOnDrop(demo.id());
    // The demo prints each child's name and pid, then the URL.
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let stdout = demo.stdout.take().unwrap();
    let seen = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("demo: {line}");
            seen.lock().unwrap().push(line);
        }
    });
    let url = format!("http://{HOST}:3111");
    eventually(WITHIN, "the URL printed", || async {
        lines.lock().unwrap().iter().any(|l| l.contains(&format!("open {url}/"))).then_some(())
    })
    .await;
    let pids = |name: &str| -> Vec<u32> {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(name) && w.next() == Some("pid")).then(|| w.next()?.parse().ok())?
            })
            .collect()
    };
    let children: Vec<u32> =
        ["logic1", "logic2", "logic3", "comet1", "comet2", "job1"].iter().flat_map(|n| pids(n)).collect();
    assert_eq!(children.len(), 6, "a pid per child: {:?}", lines.lock().unwrap());

    let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let overview = || async {
        let reply: Value =
            http.get(format!("{url}/cluster/overview")).send().await.ok()?.json().await.ok()?;
        (reply["code"] == 0).then(|| reply["data"].clone())
    };
    eventually(WITHIN, "3 nodes up, 2 live comets, a job lease", || async {
        let d = overview().await?;
        let comets = d["comets"].as_array()?.iter().filter(|c| c["live"] == true).count();
        (overview_nodes_up(&d) == [(1, true), (2, true), (3, true)]
            && comets == 2
            && d["jobs"][0]["lease_live"] == true
            && d["leader"].is_u64())
        .then_some(())
    })
    .await;

    // kill -9 logic2: shown down, then started again by the demo and shown up.
    let logic2 = pids("logic2")[0];
    Command::new("kill").args(["-9", &logic2.to_string()]).status().unwrap();
    eventually(WITHIN, "node 2 shown down", || async {
        overview_nodes_up(&overview().await?).contains(&(2, false)).then_some(())
    })
    .await;
    eventually(WITHIN, "node 2 restarted and shown up", || async {
        (pids("logic2").len() == 2 && overview_nodes_up(&overview().await?).contains(&(2, true)))
            .then_some(())
    })
    .await;

    // SIGTERM: the demo stops its children and exits.
    Command::new("kill").args(["-TERM", &demo.id().to_string()]).status().unwrap();
    let status = eventually(WITHIN, "the demo to exit", || {
        let s = demo.try_wait().ok().flatten();
        async move { s }
    })
    .await;
    assert!(status.success(), "goim demo exited {status}");
    let running: Vec<u32> =
        [children, pids("logic2")].concat().into_iter().filter(|&p| pid_alive(p)).collect();
    assert!(running.is_empty(), "children still running after the demo stopped: {running:?}");
}
