//! The two subscriber protocols behind one small interface, so one socket loop
//! (`socket.rs`) serves goim over TCP, goim over WebSocket and NATS: each turns the bytes
//! read into counts and latencies on the process's `Stats`, and says what to write back.
use goim_net::packet::{op, Packet};

use super::goim_stream::GoimStream;
use super::nats_stream::{NatsEvent, NatsStream};
use super::stats::Stats;
use super::ws_frames::{self, WsEvent, WsFrames};

pub trait Protocol {
    /// What to send once connected.
    fn opening(&mut self, out: &mut Vec<u8>);
    /// Takes bytes read at `now_ns`, appends any answer to `out`; an error ends the socket.
    fn on_bytes(&mut self, data: &[u8], now_ns: u64, stats: &Stats, out: &mut Vec<u8>) -> Result<(), String>;
    /// Appends one heartbeat to `out`.
    fn heartbeat(&mut self, out: &mut Vec<u8>);
    /// Whether the socket is subscribed (and counted so in `stats`).
    fn subscribed(&self) -> bool;
}

/// Where a goim WebSocket stands: waiting for the upgrade's answer (its bytes so far), or open.
enum Ws {
    Upgrading(Vec<u8>),
    Open(WsFrames),
}

/// A goim subscriber: auth (op 7) into the bench room, then counts `bench_op` pushes.
pub struct GoimSub {
    ws: Option<Ws>,
    host: String,
    auth: Vec<u8>,
    walker: GoimStream,
    subscribed: bool,
    bench_op: i32,
}

/// Longest upgrade answer read before giving up on it.
const MAX_UPGRADE_HEAD: usize = 8192;

impl GoimSub {
    pub fn new(ws: bool, host: String, mid: u64, room: &str, bench_op: i32) -> Self {
        let body = serde_json::json!({
            "mid": mid, "room_id": format!("live://{room}"), "platform": "bench", "accepts": [bench_op],
        });
        let auth = Packet::new(op::AUTH, 1, body.to_string().into_bytes()).to_bytes().to_vec();
        GoimSub {
            ws: ws.then(|| Ws::Upgrading(Vec::new())),
            host,
            auth,
            walker: GoimStream::default(),
            subscribed: false,
            bench_op,
        }
    }

    fn send_packet(ws: bool, packet: &[u8], out: &mut Vec<u8>) {
        if ws {
            ws_frames::client_frame(ws_frames::OP_BINARY, packet, out);
        } else {
            out.extend_from_slice(packet);
        }
    }

    /// Walks goim packets (a TCP stream, or WebSocket payloads).
    fn walk(&mut self, data: &[u8], now_ns: u64, stats: &Stats) -> Result<(), String> {
        let (subscribed, bench_op) = (&mut self.subscribed, self.bench_op);
        let mut refused = None;
        self.walker
            .feed(data, &mut |op, prefix| match op {
                op::AUTH_REPLY if prefix.starts_with(b"{\"error\"") => {
                    refused = Some(format!("auth refused: {}", String::from_utf8_lossy(prefix)));
                }
                op::AUTH_REPLY if !*subscribed => {
                    *subscribed = true;
                    stats.subscribed();
                }
                op::HEARTBEAT_REPLY => stats.heartbeat(),
                o if o == bench_op => stats.deliver(prefix, now_ns),
                _ => {}
            })
            .map_err(|e| e.to_string())?;
        refused.map_or(Ok(()), Err)
    }
}

impl Protocol for GoimSub {
    fn opening(&mut self, out: &mut Vec<u8>) {
        match self.ws {
            Some(_) => out.extend(ws_frames::upgrade_request(&self.host, "/sub")),
            None => out.extend_from_slice(&self.auth),
        }
    }

    fn on_bytes(&mut self, data: &[u8], now_ns: u64, stats: &Stats, out: &mut Vec<u8>) -> Result<(), String> {
        let mut frames = match self.ws.take() {
            None => return self.walk(data, now_ns, stats),
            Some(Ws::Open(frames)) => frames,
            Some(Ws::Upgrading(mut head)) => {
                head.extend_from_slice(data);
                let Some(len) = ws_frames::response_head_len(&head) else {
                    if head.len() > MAX_UPGRADE_HEAD {
                        return Err("upgrade answer too long".into());
                    }
                    self.ws = Some(Ws::Upgrading(head));
                    return Ok(());
                };
                if !ws_frames::is_switching(&head[..len]) {
                    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
                    return Err(format!("upgrade refused: {}", String::from_utf8_lossy(line)));
                }
                Self::send_packet(true, &self.auth, out);
                let mut frames = WsFrames::default();
                let rest = head.split_off(len);
                self.feed_frames(&mut frames, &rest, now_ns, stats, out)?;
                self.ws = Some(Ws::Open(frames));
                return Ok(());
            }
        };
        let fed = self.feed_frames(&mut frames, data, now_ns, stats, out);
        self.ws = Some(Ws::Open(frames));
        fed
    }

    fn heartbeat(&mut self, out: &mut Vec<u8>) {
        let beat = Packet::new(op::HEARTBEAT, 0, Vec::new()).to_bytes();
        Self::send_packet(self.ws.is_some(), &beat, out);
    }

    fn subscribed(&self) -> bool {
        self.subscribed
    }
}

impl GoimSub {
    fn feed_frames(
        &mut self,
        frames: &mut WsFrames,
        data: &[u8],
        now_ns: u64,
        stats: &Stats,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let mut result = Ok(());
        frames
            .feed(data, &mut |event| match event {
                WsEvent::Data(d) if result.is_ok() => result = self.walk(d, now_ns, stats),
                WsEvent::Data(_) => {}
                WsEvent::Ping(p) => ws_frames::client_frame(ws_frames::OP_PONG, p, out),
                WsEvent::Close => result = Err("closed by the server (WebSocket close)".into()),
            })
            .map_err(|e| e.to_string())?;
        result
    }
}

/// A NATS subscriber on subject `bench`.
#[derive(Default)]
pub struct NatsSub {
    stream: NatsStream,
    subscribed: bool,
}

impl Protocol for NatsSub {
    fn opening(&mut self, out: &mut Vec<u8>) {
        // The PING's PONG comes once the server has processed the SUB.
        out.extend_from_slice(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB bench 1\r\nPING\r\n");
    }

    fn on_bytes(&mut self, data: &[u8], now_ns: u64, stats: &Stats, out: &mut Vec<u8>) -> Result<(), String> {
        let subscribed = &mut self.subscribed;
        let mut error = None;
        self.stream
            .feed(data, &mut |event| match event {
                NatsEvent::Msg(prefix) => stats.deliver(prefix, now_ns),
                NatsEvent::Ping => out.extend_from_slice(b"PONG\r\n"),
                NatsEvent::Pong if !*subscribed => {
                    *subscribed = true;
                    stats.subscribed();
                }
                NatsEvent::Pong => stats.heartbeat(),
                NatsEvent::Err(line) => error = Some(String::from_utf8_lossy(line).into_owned()),
            })
            .map_err(|e| e.to_string())?;
        error.map_or(Ok(()), Err)
    }

    fn heartbeat(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"PING\r\n");
    }

    fn subscribed(&self) -> bool {
        self.subscribed
    }
}
