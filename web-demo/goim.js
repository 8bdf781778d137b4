// A goim v2 WebSocket client: 16-byte big-endian header + body per packet, op-9 batches
// unpacked into their inner packets. Usable from any page: new GoimClient(url, auth, handlers).
"use strict";

const OP = { HEARTBEAT: 2, HEARTBEAT_REPLY: 3, SEND_MSG: 4, SEND_MSG_REPLY: 5, AUTH: 7, AUTH_REPLY: 8, RAW: 9,
  CHANGE_ROOM: 12, CHANGE_ROOM_REPLY: 13 };
const HEADER = 16;

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

class GoimClient {
  constructor(url, auth, handlers) {
    this.url = url;
    this.auth = auth;
    this.on = handlers;
    this.seq = 0;
    this.backoff = 500;
    this.connect();
  }

  connect() {
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => { this.backoff = 500; ws.send(encodePacket(OP.AUTH, ++this.seq, JSON.stringify(this.auth))); };
    ws.onmessage = (ev) => {
      for (const p of decodePackets(ev.data)) this.dispatch(p);
    };
    ws.onclose = () => {
      clearInterval(this.timer);
      this.on.status && this.on.status("disconnected, retrying");
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 10000);
    };
  }

  dispatch(p) {
    if (p.op === OP.AUTH_REPLY) {
      const reply = p.body ? JSON.parse(p.body) : {};
      if (reply.error) { this.on.status && this.on.status("auth rejected: " + reply.error); return; }
      this.auth.key = reply.key;
      this.on.status && this.on.status("connected as mid " + reply.mid + " in " + reply.room_id);
      const every = Math.max(5, Math.min(reply.heartbeat || 30, 30)) * 1000;
      this.heartbeat();
      this.timer = setInterval(() => this.heartbeat(), every);
    } else if (p.op === OP.HEARTBEAT_REPLY) {
      const b = p.bytes;
      const n = b.length >= 4 ? new DataView(b.buffer, b.byteOffset, 4).getInt32(0) : 0;
      this.on.online && this.on.online(n);
    } else if (p.op === OP.SEND_MSG_REPLY) {
      this.on.sent && this.on.sent(p.body ? JSON.parse(p.body) : {});
    } else {
      this.on.message && this.on.message(p);
    }
  }

  heartbeat() { this.ws.send(encodePacket(OP.HEARTBEAT, ++this.seq, "")); }
  send(text) { this.ws.send(encodePacket(OP.SEND_MSG, ++this.seq, text)); }
}
