/* goim.js: a goim v2 WebSocket client for browsers, with no dependency, usable on its own
 * (web-demo/README.md documents it). Packets are a 16-byte big-endian header and a body;
 * op-9 messages are batches of packets. The client asks logic (/goim/nodes/weighted) which
 * comet to use, sends heartbeats, and on a lost connection reconnects with jittered backoff,
 * to another comet when there is one, resuming its room: the auth carries its key, the last
 * room offset seen (room_seq) and its epoch, so the comet replays what was missed.
 *
 *   const c = new GoimClient({ auth: { mid: 7, room_id: "live://1000" }, on: { message(p) {…} } });
 */
"use strict";

const OP = {
  HEARTBEAT: 2, HEARTBEAT_REPLY: 3, SEND_MSG: 4, SEND_MSG_REPLY: 5, AUTH: 7, AUTH_REPLY: 8,
  RAW: 9, CHANGE_ROOM: 12, CHANGE_ROOM_REPLY: 13,
};
// Replies carry the request's seq, not a room offset.
const REPLY_OPS = new Set([1, 3, 5, 8, 13, 15, 17]);
const HEADER = 16;
const BACKOFF_MIN = 500, BACKOFF_MAX = 10000;
const OPEN_TIMEOUT = 5000;

/** One packet as bytes: header (length, header length, ver 1, op, seq) and the UTF-8 body. */
function encodePacket(op, seq, body) {
  const bytes = typeof body === "string" || body == null ? new TextEncoder().encode(body || "") : body;
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

/** The packets of one WebSocket message, op-9 batches unpacked into their inner packets.
 *  Each is { ver, op, seq, bytes (the raw body), body (it as text) }. */
function decodePackets(buf) {
  const out = [];
  const v = new DataView(buf);
  let off = 0;
  while (off + HEADER <= buf.byteLength) {
    const packLen = v.getInt32(off), headerLen = v.getInt16(off + 4);
    if (headerLen !== HEADER || packLen < HEADER || off + packLen > buf.byteLength) break;
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

/** Room pushes carry the room offset truncated to 32 bits: the offset with those low bits
 *  closest to `current`. */
function extendRoomSeq(current, low32) {
  const diff = (low32 - (current % 2 ** 32)) | 0;
  const seq = current + diff;
  return seq < 0 ? low32 : seq;
}

function parseJson(text) {
  try { return text ? JSON.parse(text) : {}; } catch (_) { return {}; }
}

/**
 * options:
 *   auth      the auth body: { mid, room_id, platform, accepts, token, … } (key is kept by
 *             the client across reconnects once the server assigned one)
 *   nodesUrl  where to ask for comets (default "/goim/nodes/weighted", same origin): a URL,
 *             a list of them tried in order, or a function returning either
 *   url       the comet to use when logic cannot say (default ws(s)://<page host>:3102/sub)
 *   on        handlers, all optional:
 *     connected({ resumed, recovered, roomSeq, epoch, missed, reply, url })
 *     disconnected({ url })              reconnecting({ attempt, delayMs })
 *     message(packet, { roomSeq })       room pushes carry roomSeq, other pushes null
 *     roomChanged(reply)                 sent(reply)          online(count)
 *     rejected(error)                    the server refused the auth
 */
class GoimClient {
  constructor(options) {
    this.auth = Object.assign({ platform: "web", accepts: [1000] }, options.auth);
    this.nodesUrl = options.nodesUrl || "/goim/nodes/weighted";
    const secure = typeof location !== "undefined" && location.protocol === "https:";
    const host = typeof location !== "undefined" ? location.hostname : "127.0.0.1";
    this.fallbackUrl = options.url || `${secure ? "wss" : "ws"}://${host}:${secure ? 3103 : 3102}/sub`;
    this.on = options.on || {};
    this.seq = 0;
    this.key = this.auth.key || "";
    this.roomSeq = 0;
    this.epoch = "";
    this.authed = false;
    this.online = false;
    this.attempt = 0;
    this.backoff = BACKOFF_MIN;
    this.failedUrl = null;
    this.closed = false;
    this.changing = null;
    this.connect();
  }

  emit(name, ...args) { if (this.on[name]) this.on[name](...args); }

  /** Comet WebSocket URLs from logic, least loaded first; [] when no logic node can say.
   *  `nodesUrl` may be one URL, a list tried in order, or a function returning either. */
  async comets() {
    const given = typeof this.nodesUrl === "function" ? this.nodesUrl() : this.nodesUrl;
    for (const nodesUrl of [].concat(given)) {
      try {
        const res = await fetch(nodesUrl, { signal: AbortSignal.timeout(3000) });
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
        // the next logic node, if any
      }
    }
    return [];
  }

  async connect() {
    if (this.closed) return;
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
    const opening = setTimeout(() => ws.close(), OPEN_TIMEOUT);
    ws.onopen = () => {
      clearTimeout(opening);
      const req = Object.assign({}, this.auth, { key: this.key });
      if (this.authed) {
        req.room_seq = this.roomSeq;
        if (this.epoch) req.epoch = this.epoch;
      }
      ws.send(encodePacket(OP.AUTH, ++this.seq, JSON.stringify(req)));
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      for (const p of decodePackets(ev.data)) this.dispatch(p);
    };
    ws.onclose = () => {
      clearTimeout(opening);
      if (ws !== this.ws) return;
      clearInterval(this.timer);
      this.failedUrl = url;
      if (this.online) this.emit("disconnected", { url });
      this.online = false;
      this.changing = null;
      this.retry();
    };
  }

  /** Jittered exponential backoff: wait between half and all of the current step. */
  retry() {
    if (this.closed) return;
    this.attempt += 1;
    const delayMs = Math.round(this.backoff * (0.5 + Math.random() / 2));
    this.emit("reconnecting", { attempt: this.attempt, delayMs });
    setTimeout(() => this.connect(), delayMs);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX);
  }

  dispatch(p) {
    if (p.op === OP.AUTH_REPLY) {
      this.authReply(parseJson(p.body));
    } else if (p.op === OP.HEARTBEAT_REPLY) {
      this.lastBeat = Date.now();
      const b = p.bytes;
      this.emit("online", b.length >= 4 ? new DataView(b.buffer, b.byteOffset, 4).getInt32(0) : 0);
    } else if (p.op === OP.SEND_MSG_REPLY) {
      this.emit("sent", parseJson(p.body));
    } else if (p.op === OP.CHANGE_ROOM_REPLY) {
      this.roomReply(p.body);
    } else if (this.changing) {
      // Pushes between a room change and its reply belong to the room being left.
    } else {
      let roomSeq = null;
      if (p.seq !== 0 && !REPLY_OPS.has(p.op)) {
        roomSeq = extendRoomSeq(this.roomSeq, p.seq >>> 0);
        this.roomSeq = Math.max(this.roomSeq, roomSeq);
      }
      this.emit("message", p, { roomSeq });
    }
  }

  // The server closes after a refused auth; onclose retries (it may be mid failover).
  authReply(reply) {
    if (reply.error) { this.emit("rejected", reply.error); return; }
    const resumed = this.authed, before = this.roomSeq, sameEpoch = (reply.epoch || "") === this.epoch;
    this.authed = true;
    this.online = true;
    this.attempt = 0;
    this.backoff = BACKOFF_MIN;
    this.key = reply.key || this.key;
    this.roomSeq = reply.room_seq || 0;
    this.epoch = reply.epoch || "";
    // Messages lost for good: known when the epoch is the same (else the history is gone).
    const missed = resumed && !reply.recovered && sameEpoch ? Math.max(0, this.roomSeq - before) : 0;
    this.emit("connected", { resumed, recovered: !!reply.recovered, roomSeq: this.roomSeq, epoch: this.epoch,
      missed, missedFrom: before + 1, reply, url: this.url });
    const every = Math.max(5, Math.min(reply.heartbeat || 30, 30)) * 1000;
    this.lastBeat = Date.now();
    clearInterval(this.timer);
    this.heartbeat();
    this.timer = setInterval(() => {
      // No heartbeat reply for two intervals: the connection is dead, start again.
      if (Date.now() - this.lastBeat > 2 * every + 1000) { this.ws.close(); return; }
      this.heartbeat();
    }, every);
  }

  roomReply(body) {
    const reply = body.startsWith("{") ? parseJson(body) : { room_id: body };
    this.changing = null;
    if (!reply.error) {
      this.auth.room_id = reply.room_id;
      if (reply.room_seq !== undefined) this.roomSeq = reply.room_seq;
      if (reply.epoch !== undefined) this.epoch = reply.epoch;
    }
    this.emit("roomChanged", reply);
  }

  /** Sends one packet while connected; returns whether it went out. */
  sendPacket(op, body) {
    if (!this.online || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(encodePacket(op, ++this.seq, body));
    return true;
  }

  heartbeat() { this.sendPacket(OP.HEARTBEAT, ""); }

  /** A chat message to the room (op 4); the server's reply comes to `on.sent`. */
  send(text) { return this.sendPacket(OP.SEND_MSG, text); }

  /** Moves to `roomId` (op 12, JSON form): the reply comes to `on.roomChanged`. */
  changeRoom(roomId) {
    if (!this.sendPacket(OP.CHANGE_ROOM, JSON.stringify({ room_id: roomId }))) return false;
    this.changing = roomId;
    return true;
  }

  /** Stops for good: no reconnect. */
  close() {
    this.closed = true;
    clearInterval(this.timer);
    if (this.ws) this.ws.close();
  }
}

if (typeof module !== "undefined" && module.exports) {
  module.exports = { GoimClient, OP, encodePacket, decodePackets, extendRoomSeq };
}
