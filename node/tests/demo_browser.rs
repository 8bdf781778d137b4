//! The web demo as people use it, in headless Chromium driven through WebDriver
//! (`chromedriver`, fantoccini) against a real cluster (3 logic + 2 comet + 1 job processes):
//! two users chat both ways with their nicknames; a third joins late, sees the history, and
//! every tab reads "online 3" within 2 s; the comet two of them are on is killed (`kill -9`)
//! and restarted while pushes go on: each push reaches every tab exactly once and in order,
//! the cluster panel shows the comet down and back, the banner says the tab reconnected; the
//! leader is killed: the panel shows it down and the new leader, and the chat goes on; one
//! moves to another room (the others see her leave); at 390 px the input and the last
//! message are in view with no horizontal scrolling.
//! Screenshots of each step go to `target/demo-screenshots/`.
mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{exclusive, wait_for, Cluster, Pusher, Role};
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const ROOM_PUSH: &str = "/goim/push/room?operation=1000&type=live&room=1000";
/// Generous: a loaded 2-core CI box runs 6 nodes and 3 browsers here.
const STEP: Duration = Duration::from_secs(30);

/// `chromedriver` on a free port, in its own process group so the browsers it starts go
/// with it.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        use std::os::unix::process::CommandExt;
        let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{bin}` ({e}): this test needs chromedriver and Chromium \
                     (Debian: apt-get install chromium chromium-driver; .ci/run installs them), \
                     or CHROMEDRIVER=/path/to/chromedriver"
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        wait_for(STEP, "chromedriver ready", || async {
            let status: Value = http.get(format!("{url}/status")).send().await.ok()?.json().await.ok()?;
            (status["value"]["ready"] == true).then_some(())
        })
        .await;
        Driver { child, url }
    }

    /// A new browser (its own profile, so its own localStorage) with a window of `w`×`h`.
    async fn browser(&self, w: u32, h: u32) -> Client {
        let mut caps = Capabilities::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                format!("--window-size={w},{h}"), "--hide-scrollbars"] }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector).capabilities(caps).connect(&self.url).await.expect("a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-9", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// What a tab shows, read from its DOM.
const READ_PAGE: &str = r#"
const q = (s) => [...document.querySelectorAll(s)];
const d = window.goimDemo;
const banner = document.getElementById('banner');
return {
  online: d ? d.client.online : false,
  url: d && d.client.url ? d.client.url.replace(/^ws:\/\//, '').replace(/\/sub$/, '') : '',
  stats: d ? d.stats : {},
  count: document.getElementById('online').textContent,
  room: document.getElementById('room-name').textContent,
  who: document.getElementById('who').textContent,
  banner: banner.hidden ? '' : banner.textContent,
  msgs: q('#log .msg').map((m) => ({ seq: Number(m.dataset.seq || 0), who: m.querySelector('.who').textContent,
    text: m.querySelector('.text').textContent, mine: m.classList.contains('mine') })),
  notices: q('#log .notice').map((n) => n.textContent),
  nodes: q('#nodes tbody tr').map((t) => ({ id: Number(t.dataset.node), up: t.dataset.up === 'true',
    leader: t.dataset.leader === 'true', text: t.textContent })),
  comets: q('#comets tbody tr').map((t) => ({ ws: t.dataset.comet, up: t.dataset.up === 'true', text: t.textContent })),
  send_disabled: document.getElementById('send-button').disabled,
};
"#;

struct Tab {
    name: &'static str,
    c: Client,
}

impl Tab {
    async fn open(driver: &Driver, name: &'static str, base: &str, w: u32, h: u32) -> Tab {
        let c = driver.browser(w, h).await;
        c.goto(&format!("{base}/?nick={name}")).await.expect("open the page");
        Tab { name, c }
    }

    async fn page(&self) -> Value {
        self.c
            .execute(READ_PAGE, vec![])
            .await
            .unwrap_or_else(|e| panic!("{}: reading the page: {e}", self.name))
    }

    /// Polls the page until `ready` holds, or panics saying what was awaited and the page.
    async fn wait(&self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + STEP;
        loop {
            let page = self.page().await;
            if ready(&page) {
                return page;
            }
            assert!(Instant::now() < deadline, "{}: timed out waiting for {what}; page: {page:#}", self.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn say(&self, text: &str) {
        let input = self.c.find(Locator::Id("msg")).await.expect("the message input");
        input.clear().await.expect("clear the input");
        input.send_keys(text).await.expect("type");
        self.c.find(Locator::Id("send-button")).await.expect("the send button").click().await.expect("send");
    }

    async fn screenshot(&self, file: &str) {
        let png = self.c.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(file), png).expect("write screenshot");
        eprintln!("screenshot {}", dir.join(file).display());
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("demo-screenshots")
}

/// (nickname, text) of the chat messages a page shows, in order.
fn chat(page: &Value) -> Vec<(String, String)> {
    page["msgs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["who"] != "server push")
        .map(|m| (m["who"].as_str().unwrap().to_string(), m["text"].as_str().unwrap().to_string()))
        .collect()
}

/// The texts of the HTTP pushes a page shows, in order.
fn pushes(page: &Value) -> Vec<String> {
    page["msgs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["who"] == "server push")
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

fn has_chat(page: &Value, want: &[(&str, &str)]) -> bool {
    let got = chat(page);
    let got: Vec<(&str, &str)> = got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    got == want
}

/// Room pushes one after another (each acknowledged, so committed, before the next), every
/// 150 ms, until stopped; returns their bodies in order.
fn push_steadily(
    pusher: Pusher,
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let body = format!("push-{n}");
            let out = pusher.push(n, ROOM_PUSH, &body, &body).await;
            assert!(out.acked.is_some(), "{body} not acknowledged: {}", out.last_error);
            sent.lock().unwrap().push(body);
            n += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_room_in_chromium_survives_a_comet_kill() {
    let _x = exclusive().await;
    let began = Instant::now();
    let driver = Driver::start().await;
    let mut c = Cluster::start(3, 2, 1).await;
    let base = c.logic[0].url();

    // Two users join one room and talk both ways.
    let alice = Tab::open(&driver, "alice", &base, 1000, 720).await;
    alice
        .wait("alice joined", |p| p["online"] == true && p["notices"].to_string().contains("alice joined"))
        .await;
    let bob = Tab::open(&driver, "bob", &base, 1000, 720).await;
    for t in [&alice, &bob] {
        t.wait("bob joined", |p| p["notices"].to_string().contains("bob joined")).await;
    }
    alice.say("hi bob").await;
    for t in [&alice, &bob] {
        t.wait("alice's message", |p| has_chat(p, &[("alice", "hi bob")])).await;
    }
    bob.say("hello alice <b>not bold</b>").await;
    let both = [("alice", "hi bob"), ("bob", "hello alice <b>not bold</b>")];
    for t in [&alice, &bob] {
        let page = t.wait("both messages, in order", |p| has_chat(p, &both)).await;
        let mine: Vec<bool> = page["msgs"].as_array().unwrap().iter().map(|m| m["mine"] == true).collect();
        assert_eq!(mine, [t.name == "alice", t.name == "bob"], "{}: own messages styled as own", t.name);
    }
    // A blank message cannot be sent.
    alice.c.find(Locator::Id("msg")).await.unwrap().send_keys("   ").await.unwrap();
    assert_eq!(alice.page().await["send_disabled"], true, "Send enabled for a blank message");
    alice.c.find(Locator::Id("msg")).await.unwrap().clear().await.unwrap();
    alice.screenshot("1-two-users.png").await;

    // A third user joins late: the history is there, and every tab counts 3 within 2 s.
    let carol = Tab::open(&driver, "carol", &base, 1000, 720).await;
    carol.wait("carol connected", |p| p["online"] == true).await;
    let joined = Instant::now();
    for t in [&alice, &bob, &carol] {
        t.wait("online 3", |p| p["count"] == "3").await;
    }
    let counted = joined.elapsed();
    assert!(counted <= Duration::from_secs(2), "online count read 3 only {counted:?} after the third join");
    carol.wait("the history", |p| has_chat(p, &both)).await;
    alice
        .wait("who is online", |p| {
            let who = p["who"].as_str().unwrap_or("");
            who.contains("alice (you)") && who.contains("bob") && who.contains("carol")
        })
        .await;
    carol.screenshot("2-late-joiner.png").await;

    // The comet two of them are on dies (kill -9) and comes back while pushes go on.
    let tabs = [&alice, &bob, &carol];
    let mut on = Vec::new();
    for t in tabs {
        on.push(t.page().await["url"].as_str().unwrap().to_string());
    }
    let comet_ws: Vec<String> = c.comets.iter().map(|n| n.ws.to_string()).collect();
    let victim =
        (0..comet_ws.len()).max_by_key(|&i| on.iter().filter(|u| **u == comet_ws[i]).count()).unwrap();
    let victim_ws = comet_ws[victim].clone();
    let moved: Vec<&Tab> = tabs.iter().zip(&on).filter(|(_, u)| **u == victim_ws).map(|(t, _)| *t).collect();
    assert!(moved.len() >= 2, "tabs on {on:?}, comets {comet_ws:?}: no comet has two of three");
    eprintln!(
        "killing comet {victim_ws}, which {} are on",
        moved.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
    );

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Vec::new()));
    let pushing = push_steadily(Pusher::new(c.logic_urls()), stop.clone(), sent.clone());
    alice.wait("the first pushes", |p| pushes(p).len() >= 5).await;
    c.kill9(Role::Comet, victim);
    let comet_is = |up: bool| {
        let ws = victim_ws.clone();
        move |p: &Value| {
            p["comets"].as_array().unwrap().iter().any(|c| c["ws"] == ws.as_str() && c["up"] == up)
        }
    };
    // The banner says so for a few seconds: watch every moved tab at once.
    futures_util::future::join_all(moved.iter().map(|t| {
        t.wait("the reconnect banner", |p| p["banner"].as_str().unwrap_or("").contains("reconnected"))
    }))
    .await;
    moved[0].wait("the comet shown down", comet_is(false)).await;
    moved[0].screenshot("3-comet-down.png").await;
    for t in &moved {
        let page = t.page().await;
        assert!(
            page["notices"].to_string().contains("missed messages recovered"),
            "{}: the reconnect did not recover: {}",
            t.name,
            page["notices"]
        );
    }
    moved[1].say("still here").await;

    c.restart(Role::Comet, victim).await;
    for t in tabs {
        t.wait("the comet shown up again", comet_is(true)).await;
    }
    let before = sent.lock().unwrap().len();
    alice.wait("pushes after the restart", |p| pushes(p).len() >= before + 5).await;
    stop.store(true, Ordering::Relaxed);
    pushing.await.expect("pusher");
    let sent = sent.lock().unwrap().clone();
    for t in tabs {
        let page = t.wait("every push", |p| pushes(p).len() >= sent.len()).await;
        assert_eq!(pushes(&page), sent, "{}: pushes not exactly once and in order", t.name);
        let said: Vec<(String, String)> = chat(&page);
        assert_eq!(
            said.last().map(|(w, m)| (w.as_str(), m.as_str())),
            Some((moved[1].name, "still here")),
            "{}",
            t.name
        );
        let seqs: Vec<u64> =
            page["msgs"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{}: messages out of room order: {seqs:?}", t.name);
        assert_eq!(page["stats"]["duplicates"], 0, "{}: a push arrived twice", t.name);
    }
    let reconnected = moved[0].page().await;
    assert!(reconnected["stats"]["reconnects"].as_u64().unwrap() >= 1);
    moved[0].screenshot("4-comet-back.png").await;

    // The leader dies too (node 1 serves the pages: when it leads, the panel reads from
    // another node): the panel shows it down and a new leader, and the chat carries on.
    let leader = c.wait_leader(STEP).await;
    let gone = c.logic[leader].id;
    c.kill9(Role::Logic, leader);
    let node_up = move |p: &Value, id: u64| {
        p["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).map(|n| n["up"] == true)
    };
    let new_leader = |p: &Value| {
        p["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["leader"] == true && n["up"] == true && n["id"] != gone)
    };
    alice
        .wait("the leader shown down and a new one", |p| node_up(p, gone) == Some(false) && new_leader(p))
        .await;
    bob.say("who leads now?").await;
    for t in tabs {
        t.wait("a message after the leader died", |p| {
            chat(p).last().is_some_and(|(w, m)| w == "bob" && m == "who leads now?")
        })
        .await;
    }
    alice.screenshot("5-leader-down.png").await;
    c.restart(Role::Logic, leader).await;
    alice.wait("the old leader shown back", |p| node_up(p, gone) == Some(true)).await;

    // Carol moves to another room (op 12): alone there, she talks; alice sees her leave.
    carol
        .c
        .execute(
            "const s = document.getElementById('room'); s.value = 'live://1001'; s.dispatchEvent(new Event('change'));",
            vec![],
        )
        .await
        .expect("switch room");
    carol
        .wait("the new room, empty", |p| {
            p["room"] == "live://1001" && p["msgs"].as_array().unwrap().is_empty()
        })
        .await;
    carol.say("anyone in 1001?").await;
    carol
        .wait("her message in the new room", |p| {
            has_chat(p, &[("carol", "anyone in 1001?")]) && p["count"] == "1"
        })
        .await;
    alice.wait("carol left", |p| p["count"] == "2" && p["notices"].to_string().contains("carol left")).await;

    // At a phone's width: no horizontal scrolling, the input and the last message in view.
    carol.c.set_window_size(390, 844).await.expect("resize");
    let fits = r#"
      const vw = document.documentElement.clientWidth, vh = window.innerHeight;
      const inView = (el) => { const r = el.getBoundingClientRect(); return r.left >= 0 && r.right <= vw && r.top >= 0 && r.bottom <= vh; };
      const msgs = document.querySelectorAll('#log .msg');
      return { width: vw, scroll: document.documentElement.scrollWidth, input: inView(document.getElementById('msg')),
        send: inView(document.getElementById('send-button')), last: msgs.length > 0 && inView(msgs[msgs.length - 1]) };
    "#;
    let deadline = Instant::now() + STEP;
    let layout = loop {
        let l = carol.c.execute(fits, vec![]).await.expect("layout");
        let ok = l["width"].as_u64().is_some_and(|w| w <= 390)
            && l["scroll"].as_u64() <= l["width"].as_u64()
            && l["input"] == true
            && l["send"] == true
            && l["last"] == true;
        if ok || Instant::now() > deadline {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(layout["width"].as_u64().is_some_and(|w| w <= 390), "not a 390 px viewport: {layout}");
    assert!(
        layout["scroll"].as_u64() <= layout["width"].as_u64(),
        "horizontal scrolling at 390 px: {layout}"
    );
    assert_eq!(
        (&layout["input"], &layout["send"], &layout["last"]),
        (&json!(true), &json!(true), &json!(true)),
        "{layout}"
    );
    carol.screenshot("6-phone-390.png").await;

    for t in [alice, bob, carol] {
        let _ = t.c.close().await;
    }
    eprintln!("demo browser test done in {:?}", began.elapsed());
}
