//! The workload: pushers that send unique values to random logic nodes over goim's HTTP
//! API (room, mid and key pushes; half of them with an `Idempotency-Key` and retried on
//! other nodes), and clients spread over the comets and rooms that receive them, reconnect
//! when their comet goes away and resume with their room offset. Every step is logged to
//! the history as invoke / ok / fail / info, connected / deliver.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use goim_client::{extend_room_seq, is_room_push, AuthRequest, Event, ResumeConfig, ResumingClient};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use crate::history::{History, PushKind, What};

/// Operations: room pushes use ROOM_OP; mid and key pushes their own, which every client
/// accepts.
pub const ROOM_OP: i32 = 1000;
pub const MID_OP: i32 = 1001;
pub const KEY_OP: i32 = 1002;

/// One workload client: who it is and where it starts.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub name: String,
    pub mid: i64,
    pub key: String,
    pub room: String,
    pub ws: bool,
    pub first_comet: String,
}

/// Counters for the progress line.
#[derive(Default)]
pub struct Counters {
    pub invoked: AtomicU64,
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
    pub delivered: AtomicU64,
    pub resumes: AtomicU64,
}

pub struct Workload {
    pub history: History,
    pub counters: Arc<Counters>,
    /// Logic HTTP addresses pushes are sent to (any node).
    pub logic_http: Vec<String>,
    pub rooms: Vec<String>,
    pub clients: Vec<ClientSpec>,
    next_op: AtomicU64,
}

/// What one HTTP attempt came to.
enum Outcome {
    Ok {
        seq: u64,
        room_seq: Option<u64>,
    },
    /// Refused before anything was sent or proposed.
    Fail(String),
    /// May or may not have been applied.
    Info(String),
}

#[derive(Deserialize)]
struct PushReply {
    code: i64,
    #[serde(default)]
    message: String,
    data: Option<PushData>,
}

#[derive(Deserialize)]
struct PushData {
    seq: u64,
    room_seq: Option<u64>,
}

impl Workload {
    pub fn new(
        history: History,
        logic_http: Vec<String>,
        rooms: Vec<String>,
        clients: Vec<ClientSpec>,
    ) -> Workload {
        Workload {
            history,
            counters: Arc::new(Counters::default()),
            logic_http,
            rooms,
            clients,
            next_op: AtomicU64::new(1),
        }
    }

    /// Runs `n` pushers until `stop`, together `rate` pushes a second.
    pub async fn push(self: Arc<Self>, n: usize, rate: f64, seed: u64, stop: Arc<AtomicBool>) {
        let http = match reqwest::Client::builder()
            .timeout(Duration::from_secs(4))
            .connect_timeout(Duration::from_secs(1))
            .pool_max_idle_per_host(4)
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                self.history.log(What::Note { text: format!("pushers not started: {e}") });
                return;
            }
        };
        let pause = Duration::from_secs_f64(n as f64 / rate.max(0.1));
        let mut tasks = Vec::new();
        for p in 0..n {
            let w = self.clone();
            let http = http.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed.wrapping_add(p as u64 * 7919));
                while !stop.load(Ordering::Relaxed) {
                    w.one_push(&http, &format!("pusher-{p}"), &mut rng).await;
                    let jitter = rng.random_range(0.5..1.5);
                    tokio::time::sleep(pause.mul_f64(jitter)).await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn one_push(&self, http: &reqwest::Client, process: &str, rng: &mut StdRng) {
        let op = self.next_op.fetch_add(1, Ordering::Relaxed);
        let value = format!("v{op}-{}", process.trim_start_matches("pusher-"));
        let roll = rng.random_range(0..100);
        let (kind, target, path) = if roll < 70 || self.clients.is_empty() {
            let room = &self.rooms[rng.random_range(0..self.rooms.len())];
            let (ty, id) = room.split_once("://").unwrap_or(("live", room));
            (PushKind::Room, room.clone(), format!("room?operation={ROOM_OP}&type={ty}&room={id}"))
        } else if roll < 85 {
            let c = &self.clients[rng.random_range(0..self.clients.len())];
            (PushKind::Mid, c.mid.to_string(), format!("mids?operation={MID_OP}&mids={}", c.mid))
        } else {
            let c = &self.clients[rng.random_range(0..self.clients.len())];
            (PushKind::Key, c.key.clone(), format!("keys?operation={KEY_OP}&keys={}", c.key))
        };
        let idem = rng.random_bool(0.5);
        self.history.log(What::Invoke {
            op,
            process: process.to_string(),
            kind,
            target,
            value: value.clone(),
            idem,
        });
        self.counters.invoked.fetch_add(1, Ordering::Relaxed);
        let attempts = if idem { 3 } else { 1 };
        let mut indeterminate = None;
        let mut last_fail = String::new();
        for attempt in 0..attempts {
            let node = &self.logic_http[rng.random_range(0..self.logic_http.len())];
            let outcome = attempt_push(http, node, &path, &value, idem).await;
            let result = match &outcome {
                Outcome::Ok { .. } => "ok".to_string(),
                Outcome::Fail(e) => format!("fail: {e}"),
                Outcome::Info(e) => format!("info: {e}"),
            };
            self.history.log(What::Attempt { op, node: node.clone(), result });
            match outcome {
                Outcome::Ok { seq, room_seq } => {
                    self.history.log(What::Ok { op, node: node.clone(), seq, room_seq });
                    self.counters.ok.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Outcome::Fail(e) => last_fail = e,
                Outcome::Info(e) => indeterminate = Some(e),
            }
            if attempt + 1 < attempts {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
        }
        match indeterminate {
            Some(error) => {
                self.history.log(What::Info { op, error });
                self.counters.info.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.history.log(What::Fail { op, error: last_fail });
                self.counters.fail.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Runs every client until `stop`; each logs what it receives.
    pub async fn receive(self: Arc<Self>, stop: Arc<AtomicBool>) {
        let mut tasks = Vec::new();
        for spec in self.clients.clone() {
            let w = self.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move { w.one_client(spec, stop).await }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn one_client(&self, spec: ClientSpec, stop: Arc<AtomicBool>) {
        let h = &self.history;
        h.log(What::Client {
            client: spec.name.clone(),
            mid: spec.mid,
            key: spec.key.clone(),
            room: spec.room.clone(),
            transport: if spec.ws { "ws".into() } else { "tcp".into() },
        });
        let auth = AuthRequest {
            mid: spec.mid,
            key: spec.key.clone(),
            room_id: spec.room.clone(),
            platform: "jepsen".into(),
            accepts: vec![MID_OP, KEY_OP],
            ..AuthRequest::default()
        };
        let mut cfg = ResumeConfig::new(self.logic_http.clone(), auth);
        cfg.ws = spec.ws;
        cfg.first_comet = Some(spec.first_comet.clone());
        cfg.backoff_max = Duration::from_secs(2);
        // A paused comet is noticed after three silent periods.
        cfg.heartbeat_cap = Duration::from_secs(1);
        cfg.attempt_timeout = Duration::from_secs(3);
        cfg.give_up_after = Duration::from_secs(600);
        let mut client = match ResumingClient::connect(cfg).await {
            Ok(c) => c,
            Err(e) => {
                h.log(What::ClientGone { client: spec.name.clone(), error: format!("connect: {e}") });
                return;
            }
        };
        let mut connects = 0u64;
        let mut last_room_seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let event = match tokio::time::timeout(Duration::from_millis(200), client.recv()).await {
                Err(_) => continue,
                Ok(Ok(e)) => e,
                Ok(Err(e)) => {
                    h.log(What::ClientGone { client: spec.name.clone(), error: e.to_string() });
                    return;
                }
            };
            match event {
                Event::Connected(reply) => {
                    if connects > 0 {
                        self.counters.resumes.fetch_add(1, Ordering::Relaxed);
                    }
                    last_room_seq = last_room_seq.max(reply.room_seq);
                    h.log(What::Connected {
                        client: spec.name.clone(),
                        comet: client.comet().to_string(),
                        room_seq: reply.room_seq,
                        epoch: reply.epoch.clone(),
                        recovered: reply.recovered,
                        resume: connects > 0,
                    });
                    connects += 1;
                }
                Event::Message(packet) => {
                    if !matches!(packet.op, ROOM_OP | MID_OP | KEY_OP) {
                        continue;
                    }
                    let room_seq = is_room_push(&packet).then(|| {
                        let s = extend_room_seq(last_room_seq, packet.seq as u32);
                        last_room_seq = last_room_seq.max(s);
                        s
                    });
                    h.log(What::Deliver {
                        client: spec.name.clone(),
                        op: packet.op,
                        room_seq,
                        value: String::from_utf8_lossy(&packet.body).into_owned(),
                    });
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        client.close().await;
    }
}

async fn attempt_push(http: &reqwest::Client, node: &str, path: &str, value: &str, idem: bool) -> Outcome {
    let mut req = http.post(format!("http://{node}/goim/push/{path}")).body(value.to_string());
    if idem {
        req = req.header("Idempotency-Key", value);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        // Nothing reached the server: definitely not applied.
        Err(e) if e.is_connect() => return Outcome::Fail(format!("connect: {e}")),
        Err(e) => return Outcome::Info(format!("send: {e}")),
    };
    let status = resp.status();
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return Outcome::Info(format!("reply: {e}")),
    };
    match serde_json::from_slice::<PushReply>(&body) {
        Ok(PushReply { code: 0, data: Some(d), .. }) => Outcome::Ok { seq: d.seq, room_seq: d.room_seq },
        // A bad request is refused before anything is proposed.
        Ok(PushReply { code: -400, message, .. }) => Outcome::Fail(message),
        Ok(PushReply { code, message, .. }) => Outcome::Info(format!("{code} {message}")),
        Err(_) => Outcome::Info(format!("HTTP {status}: {}", String::from_utf8_lossy(&body))),
    }
}
