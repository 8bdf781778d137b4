// A goim v2 WebSocket client: 16-byte big-endian header + body per packet, op-9 batches
// unpacked into their inner packets. It asks logic (/goim/nodes/weighted, same origin as the
// page) which comet to use, and on disconnect reconnects with jittered backoff, resuming the
// room: the auth carries the key, the last room offset seen (room_seq) and its epoch, so the
// comet replays what was missed. Usable from any page:
//   new GoimClient(fallbackUrl, auth, handlers[, { nodesUrl }])
"use strict";

const OP = { HEARTBEAT: 2, HEARTBEAT_REPLY: 3, SEND_MSG: 4, SEND_MSG_REPLY: 5, AUTH: 7, AUTH_REPLY: 8, RAW: 9,
  CHANGE_ROOM: 12, CHANGE_ROOM_REPLY: 13 };
// Replies carry the request's seq, not a room offset.
const REPLY_OPS = new Set([1, 3, 5, 8, 13, 15, 17]);
const HEADER = 16;
const BACKOFF_MIN = 500, BACKOFF_MAX = 10000;

function encodePacket(op, seq, body) {
  const bytes = new TextEncoder().encode(body || "");
  const buf = new ArrayBuffer(HEADER + bytes.length);
  const v = new DataView(buf);
  v.setInt32(0, HEADER + bytes.length);
  v.setInt16(4, HEADER);
  v.setInt16(6, 1);
  v.setInt32(8, op);
  v.setInt32(12, seq);
  new Uint8Array(buf, HEADER).set(bytes);
  return buf;
}

function decodePackets(buf) {
  const out = [];
  const v = new DataView(buf);
  let off = 0;
  while (off + HEADER <= buf.byteLength) {
    const packLen = v.getInt32(off), headerLen = v.getInt16(off + 4);
    if (headerLen !== HEADER || packLen < HEADER || off + packLen > buf.byteLength) break;
    // `bytes` is the raw body (the heartbeat reply's count is binary); `body` its text.
    const bytes = new Uint8Array(buf, off + HEADER, packLen - HEADER);
    const p = { ver: v.getInt16(off + 6), op: v.getInt32(off + 8), seq: v.getInt32(off + 12),
      bytes, body: new TextDecoder().decode(bytes) };
    if (p.op === OP.RAW) {
      out.push(...decodePackets(buf.slice(off + HEADER, off + packLen)));
    } else {
      out.push(p);
    }
    off += packLen;
  }
  return out;
}

// Room pushes carry the room offset truncated to 32 bits: take the offset with those low
// bits closest to `current`.
function extendRoomSeq(current, low32) {
  const diff = (low32 - (current % 2 ** 32)) | 0;
  const seq = current + diff;
  return seq < 0 ? low32 : seq;
}

class GoimClient {
  constructor(url, auth, handlers, options) {
    this.fallbackUrl = url;
    this.nodesUrl = (options && options.nodesUrl) || "/goim/nodes/weighted";
    this.auth = auth;
    this.on = handlers;
    this.seq = 0;
    this.backoff = BACKOFF_MIN;
    this.key = auth.key || "";
    this.roomSeq = 0;
    this.epoch = "";
    this.authed = false;
    this.failedUrl = null;
    this.connect();
  }

  status(text) { this.on.status && this.on.status(text); }

  // Comet WebSocket URLs from logic, least loaded first; [] when logic can't say.
  async comets() {
    try {
      const res = await fetch(this.nodesUrl, { signal: AbortSignal.timeout(3000) });
      const reply = await res.json();
      const scheme = new URL(this.fallbackUrl).protocol;
      // Over WSS every comet listens on the cluster's wss_port (goim's convention).
      const wssPort = scheme === "wss:" && reply.data && reply.data.wss_port;
      return ((reply.data && reply.data.addrs) || []).map((a) => a.ws).filter(Boolean).map((ws) => {
        const [, host, wsPort] = ws.match(/^(.*):(\d+)$/) || [null, ws, ""];
        const port = wssPort || wsPort;
        const h = ["", "0.0.0.0", "[::]"].includes(host) ? location.hostname : host;
        return `${scheme}//${h}${port ? ":" + port : ""}/sub`;
      });
    } catch (_) {
      return [];
    }
  }

  async connect() {
    const urls = await this.comets();
    const url = urls.find((u) => u !== this.failedUrl) || urls[0] || this.fallbackUrl;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (_) {
      this.failedUrl = url;
      return this.retry();
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.url = url;
    ws.onopen = () => {
      const req = Object.assign({}, this.auth, { key: this.key });
      if (this.authed) {
        req.room_seq = this.roomSeq;
        if (this.epoch) req.epoch = this.epoch;
      }
      ws.send(encodePacket(OP.AUTH, ++this.seq, JSON.stringify(req)));
    };
    ws.onmessage = (ev) => {
      for (const p of decodePackets(ev.data)) this.dispatch(p);
    };
    ws.onclose = () => {
      if (ws !== this.ws) return;
      clearInterval(this.timer);
      this.failedUrl = url;
      this.status("disconnected, retrying");
      this.retry();
    };
  }

  // Jittered exponential backoff: wait between half and all of the current step.
  retry() {
    setTimeout(() => this.connect(), this.backoff * (0.5 + Math.random() / 2));
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX);
  }

  dispatch(p) {
    if (p.op === OP.AUTH_REPLY) {
      this.authReply(p.body ? JSON.parse(p.body) : {});
    } else if (p.op === OP.HEARTBEAT_REPLY) {
      const b = p.bytes;
      const n = b.length >= 4 ? new DataView(b.buffer, b.byteOffset, 4).getInt32(0) : 0;
      this.on.online && this.on.online(n);
    } else if (p.op === OP.SEND_MSG_REPLY) {
      this.on.sent && this.on.sent(p.body ? JSON.parse(p.body) : {});
    } else {
      if (p.seq !== 0 && !REPLY_OPS.has(p.op)) {
        this.roomSeq = Math.max(this.roomSeq, extendRoomSeq(this.roomSeq, p.seq >>> 0));
      }
      this.on.message && this.on.message(p);
    }
  }

  // The server closes after a refused auth; onclose retries (it may be mid failover).
  authReply(reply) {
    if (reply.error) { this.status("auth rejected: " + reply.error); return; }
    const resumed = this.authed, before = this.roomSeq, sameEpoch = (reply.epoch || "") === this.epoch;
    this.authed = true;
    this.backoff = BACKOFF_MIN;
    this.key = reply.key || this.key;
    this.roomSeq = reply.room_seq || 0;
    this.epoch = reply.epoch || "";
    if (!resumed) {
      this.status("connected as mid " + reply.mid + " in " + reply.room_id);
    } else if (reply.recovered) {
      this.status("reconnected (recovered missed messages after room seq " + this.roomSeq + ")");
    } else {
      const lost = sameEpoch && this.roomSeq > before ? " " + (this.roomSeq - before) : "";
      this.status("reconnected (history gap:" + lost + " missed messages not recoverable)");
    }
    const every = Math.max(5, Math.min(reply.heartbeat || 30, 30)) * 1000;
    this.heartbeat();
    this.timer = setInterval(() => this.heartbeat(), every);
  }

  // Sends only while connected; returns whether the packet went out.
  sendPacket(op, body) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(encodePacket(op, ++this.seq, body));
    return true;
  }

  heartbeat() { this.sendPacket(OP.HEARTBEAT, ""); }
  send(text) { return this.sendPacket(OP.SEND_MSG, text); }
}
