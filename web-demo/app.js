/* app.js: the web demo's page logic (index.html): the chat room on top of goim.js (nickname,
 * rooms, history on join, online count and who is online, reconnect banner) and the cluster
 * panel fed by a 1 s poll of /cluster/overview; reads move to another logic node when this
 * page's own stops answering. Text from the network is only ever set as
 * textContent, never parsed as HTML. */
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const store = {
  get(k) { try { return localStorage.getItem("goim." + k); } catch (_) { return null; } },
  set(k, v) { try { localStorage.setItem("goim." + k, v); } catch (_) { /* private mode */ } },
};

const HISTORY = 50;

// Logic nodes' HTTP bases: this page's origin first, then the others the cluster panel
// learns of. Reads go to the one that answered last and move on when it stops answering.
const bases = [location.origin];
let baseAt = 0;
function orderedBases() { return bases.map((_, i) => bases[(baseAt + i) % bases.length]); }
async function api(path, timeoutMs) {
  for (const base of orderedBases()) {
    try {
      const res = await fetch(base + path, { signal: AbortSignal.timeout(timeoutMs || 2000) });
      const reply = await res.json();
      baseAt = bases.indexOf(base);
      return reply;
    } catch (_) {
      // try the next node
    }
  }
  throw new Error("no logic node answers");
}
function learnBases(nodes) {
  for (const n of nodes) {
    if (!n.http) continue;
    const [, host, port] = n.http.match(/^(.*):(\d+)$/) || [null, n.http, ""];
    const h = ["0.0.0.0", "[::]", ""].includes(host) ? location.hostname : host;
    const base = `${location.protocol}//${h}${port ? ":" + port : ""}`;
    if (!bases.includes(base)) bases.push(base);
  }
}
const DEFAULT_ROOMS = ["live://1000", "live://1001", "live://1002"];

// Identity: a mid and a nickname kept across reloads (?nick= sets the nickname).
let mid = Number(store.get("mid"));
if (!Number.isSafeInteger(mid) || mid <= 0) {
  mid = 1 + Math.floor(Math.random() * 2 ** 31);
  store.set("mid", String(mid));
}
let nick = (params.get("nick") || store.get("nick") || "guest-" + String(mid).slice(-4)).trim().slice(0, 24);
store.set("nick", nick);
$("nick").value = nick;
$("nick").addEventListener("change", () => {
  const v = $("nick").value.trim().slice(0, 24);
  if (v) { nick = v; store.set("nick", nick); nicks.set(mid, nick); renderWho(); } else { $("nick").value = nick; }
});

// Rooms: the current one, and the ones this browser has used.
let room = params.get("room") || store.get("room") || DEFAULT_ROOMS[0];
const rooms = new Set([...DEFAULT_ROOMS, ...JSON.parse(store.get("rooms") || "[]"), room]);
function roomParts(r) {
  const i = r.indexOf("://");
  return i < 0 ? ["live", r] : [r.slice(0, i), r.slice(i + 3)];
}
function renderRooms() {
  const sel = $("room");
  sel.replaceChildren(...[...rooms].map((r) => {
    const o = document.createElement("option");
    o.value = r; o.textContent = r; o.selected = r === room;
    return o;
  }));
  $("room-name").textContent = room;
  const [type, id] = roomParts(room);
  $("curl").textContent = `curl -d 'hello' '${location.protocol}//${location.host}/goim/push/room?operation=1000&type=${encodeURIComponent(type)}&room=${encodeURIComponent(id)}'`;
}

// What the page shows, and counters a test (or a curious user) can read.
const stats = { duplicates: 0, reconnects: 0, recovered: 0, lost: 0 };
const nicks = new Map([[mid, nick]]);
let rendered = new Set();
let loading = true;
let pending = [];
let resumedAt = 0, resumedAfter = 0;

const log = $("log");
function atBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 40; }
function append(el) {
  const stick = atBottom();
  log.appendChild(el);
  if (stick || el.classList.contains("mine")) log.scrollTop = log.scrollHeight;
}
function notice(text, cls) {
  const d = document.createElement("div");
  d.className = "notice" + (cls ? " " + cls : "");
  d.textContent = text;
  append(d);
}
const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

// A room push's body: the chat op wraps what a client sent as {"mid":…,"msg":"…"}; this page
// sends {"nick":…,"text":…} (or {"nick":…,"join":true}) in it. Anything else is shown as is.
function parseBody(body) {
  let outer;
  try { outer = JSON.parse(body); } catch (_) { return { text: body }; }
  if (!outer || typeof outer !== "object" || !("msg" in outer)) return { text: body };
  let inner = null;
  try { inner = JSON.parse(outer.msg); } catch (_) { /* plain text from another client */ }
  const from = Number(outer.mid);
  if (inner && typeof inner === "object" && (typeof inner.text === "string" || inner.join)) {
    return { mid: from, nick: String(inner.nick || "").slice(0, 24), text: inner.text, join: !!inner.join };
  }
  return { mid: from, text: String(outer.msg) };
}

function render(m) {
  if (m.roomSeq != null) {
    if (rendered.has(m.roomSeq)) return false;
    rendered.add(m.roomSeq);
    store.set("seen." + room, String(m.roomSeq));
  }
  const b = parseBody(m.body);
  if (b.mid && b.nick) nicks.set(b.mid, b.nick);
  const name = b.nick || (b.mid ? "user " + b.mid : "server push");
  if (b.join) { notice(`${name} joined · ${clock(m.ts)}`); renderWho(); return true; }
  const d = document.createElement("div");
  d.className = "msg" + (b.mid === mid ? " mine" : "") + (m.recovered ? " recovered" : "");
  if (m.roomSeq != null) d.dataset.seq = String(m.roomSeq);
  const who = document.createElement("span");
  who.className = "who"; who.textContent = name;
  const time = document.createElement("span");
  time.className = "time"; time.textContent = clock(m.ts);
  const text = document.createElement("span");
  text.className = "text"; text.textContent = b.text;
  d.append(who, time);
  if (m.recovered) {
    const mark = document.createElement("span");
    mark.className = "mark"; mark.textContent = "↻ recovered";
    d.append(mark);
  }
  d.append(text);
  append(d);
  return true;
}

// History on joining a room: the last messages, a divider before the ones this browser had
// not seen, then what arrived live meanwhile.
async function joinRoom(roomSeq) {
  loading = true;
  const lastSeen = Number(store.get("seen." + room) || 0);
  const [type, id] = roomParts(room);
  try {
    const since = Math.max(0, roomSeq - HISTORY);
    const reply = await api(`/goim/history/room?type=${encodeURIComponent(type)}&room=${encodeURIComponent(id)}&since=${since}&limit=${HISTORY}`, 5000);
    if (reply.code !== 0) throw new Error(reply.message);
    const msgs = reply.data.messages.filter((h) => h.body !== undefined);
    if (!reply.data.complete && since > 0) notice("older messages are no longer kept");
    let divided = false;
    for (const h of msgs) {
      if (!divided && lastSeen > 0 && h.room_seq > lastSeen) {
        const div = document.createElement("div");
        div.className = "divider"; div.textContent = "new since you left";
        append(div);
        divided = true;
      }
      render({ roomSeq: h.room_seq, body: h.body, ts: h.ts_ms });
    }
  } catch (e) {
    notice("history unavailable: " + e.message, "gap");
  }
  loading = false;
  for (const m of pending) render(m);
  pending = [];
  client.send(JSON.stringify({ nick, join: true }));
}

// Banner: hidden while all is well; says what the connection is doing otherwise.
let bannerTimer = 0;
function banner(text, cls, hideAfterMs) {
  const b = $("banner");
  clearTimeout(bannerTimer);
  b.textContent = text;
  b.className = cls || "";
  b.hidden = !text;
  if (hideAfterMs) bannerTimer = setTimeout(() => { b.hidden = true; }, hideAfterMs);
}

function setOnline(on) {
  $("msg").disabled = false;
  $("send-button").disabled = !on || !$("msg").value.trim();
  $("msg").placeholder = on ? "say something" : "offline: waiting for the connection";
}

const client = new GoimClient({
  auth: { mid, room_id: room, platform: "web", accepts: [1000] },
  nodesUrl: () => orderedBases().map((b) => b + "/goim/nodes/weighted"),
  on: {
    connected(info) {
      setOnline(true);
      if (!info.resumed) {
        banner("");
        joinRoom(info.roomSeq);
        return;
      }
      stats.reconnects += 1;
      const where = info.url.replace(/^wss?:\/\//, "").replace(/\/sub$/, "");
      if (info.recovered) {
        resumedAt = Date.now(); resumedAfter = info.roomSeq;
        banner(`reconnected to ${where}: missed messages recovered`, "ok", 8000);
        notice(`reconnected to ${where} · missed messages recovered after room seq ${info.roomSeq}`);
      } else if (info.missed > 0) {
        stats.lost += info.missed;
        banner(`reconnected to ${where}, but ${info.missed} messages could not be recovered`, "bad", 15000);
        notice(`${info.missed} messages (room seq ${info.missedFrom}–${info.missedFrom + info.missed - 1}) were lost: the room's history no longer covers them`, "gap");
      } else {
        banner(`reconnected to ${where}: the room's history was reset, earlier messages cannot be recovered`, "bad", 15000);
        notice("reconnected: the room's history was reset; messages sent meanwhile cannot be recovered", "gap");
      }
    },
    disconnected() {
      setOnline(false);
      banner("connection lost: reconnecting…", "");
    },
    reconnecting({ attempt, delayMs }) {
      setOnline(false);
      banner(`connection lost: reconnecting (attempt ${attempt}, next try in ${(delayMs / 1000).toFixed(1)} s)…`, "");
    },
    message(p, { roomSeq }) {
      const recovered = roomSeq != null && resumedAt > 0 && roomSeq > resumedAfter && Date.now() - resumedAt < 1000;
      if (recovered) stats.recovered += 1;
      const m = { roomSeq, body: p.body, ts: Date.now(), recovered };
      if (loading) { pending.push(m); return; }
      if (roomSeq != null && rendered.has(roomSeq)) { stats.duplicates += 1; return; }
      render(m);
    },
    roomChanged(reply) {
      if (reply.error) { notice("could not change room: " + reply.error, "gap"); return; }
      room = reply.room_id;
      store.set("room", room);
      renderRooms();
      log.replaceChildren();
      rendered = new Set();
      members = new Map();
      joinRoom(reply.room_seq || 0);
    },
    sent(reply) { if (reply.error) notice("not sent: " + reply.error, "gap"); },
    rejected(error) { banner("the server refused this client: " + error, "bad"); },
  },
});

function changeRoom(r) {
  if (!r || r === room) return;
  rooms.add(r);
  store.set("rooms", JSON.stringify([...rooms].filter((x) => !DEFAULT_ROOMS.includes(x))));
  if (!client.changeRoom(r)) { notice("offline: cannot change room now", "gap"); renderRooms(); return; }
  loading = true;
  pending = [];
}
$("room").addEventListener("change", (e) => changeRoom(e.target.value));
$("room-input").addEventListener("keydown", (e) => {
  if (e.key !== "Enter") return;
  e.preventDefault();
  const v = e.target.value.trim();
  if (v) changeRoom(v.includes("://") ? v : "live://" + v);
  e.target.value = "";
});

$("msg").addEventListener("input", () => setOnline(client.online));
$("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("msg");
  const text = input.value.trim();
  if (!text) { input.value = ""; setOnline(client.online); return; }
  if (!client.send(JSON.stringify({ nick, text }))) { notice("not sent: offline", "gap"); return; }
  input.value = "";
  setOnline(client.online);
});

// Who is online: the room's sessions, polled every second; a member gone for 3 s has left.
let members = new Map(); // mid -> last time seen
function renderWho() {
  const names = [...members.keys()].sort((a, b) => a - b)
    .map((m) => (nicks.get(m) || "user " + m) + (m === mid ? " (you)" : ""));
  $("who").textContent = names.length ? "· " + names.join(", ") : "";
}
async function pollMembers() {
  const [type, id] = roomParts(room);
  try {
    const reply = await api(`/goim/online/members?type=${encodeURIComponent(type)}&room=${encodeURIComponent(id)}`);
    if (reply.code !== 0 || reply.data.room_id !== room) return;
    $("online").textContent = String(reply.data.count);
    const now = Date.now();
    for (const m of reply.data.mids) members.set(m, now);
    for (const [m, seen] of members) {
      if (now - seen > 3000) {
        members.delete(m);
        if (m !== mid) notice(`${nicks.get(m) || "user " + m} left · ${clock(now)}`);
      }
    }
    renderWho();
  } catch (_) { /* the next poll will tell */ }
}

// The cluster panel: every logic node, the job, every comet (one that vanished stays listed
// as down), which comet this tab is on.
const knownComets = new Map();
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}
function renderCluster(d) {
  $("cluster-note").textContent = `· answered by node ${d.answered_by}, term ${d.term}`;
  $("nodes").tBodies[0].replaceChildren(...d.nodes.map((n) => {
    const tr = document.createElement("tr");
    tr.dataset.node = String(n.node_id);
    tr.dataset.up = String(n.up);
    tr.dataset.leader = String(n.node_id === d.leader);
    cell(tr, (n.node_id === d.leader ? "★ " : "") + n.node_id, n.node_id === d.leader ? "here" : "");
    cell(tr, n.up ? n.roles || "" : "");
    cell(tr, n.up ? n.state : "down", n.up ? "up" : "down");
    cell(tr, n.up ? String(n.term) : "");
    cell(tr, n.up ? `${n.last_log_index ?? "–"} / ${n.applied_index ?? "–"}` : "");
    if (!n.up) tr.title = n.error || "";
    return tr;
  }));
  const job = d.jobs[0];
  $("jobs").textContent = job
    ? `job: lag ${job.lag} (offset ${job.offset} of ${d.push_log.last_seq})` + (job.lease_holder ? ` · lease ${job.lease_holder}${job.lease_live ? "" : " (expired)"}` : " · no job")
    : "";
  const now = Date.now();
  for (const c of d.comets) knownComets.set(c.id, Object.assign({ seen: now }, c));
  const mine = client.online && client.url ? client.url.replace(/^wss?:\/\//, "").replace(/\/sub$/, "") : "";
  $("comets").tBodies[0].replaceChildren(...[...knownComets.values()].sort((a, b) => a.id.localeCompare(b.id)).map((c) => {
    const live = c.seen === now && c.live;
    const tr = document.createElement("tr");
    tr.dataset.comet = c.ws;
    tr.dataset.up = String(live);
    cell(tr, c.ws, c.ws === mine ? "here" : "");
    cell(tr, live ? String(c.conn_count) : "");
    cell(tr, (live ? "up" : "down") + (c.ws === mine ? " · this tab" : ""), live ? "up" : "down");
    return tr;
  }));
}
async function pollCluster() {
  try {
    const reply = await api("/cluster/overview");
    if (reply.code !== 0) throw new Error(reply.message);
    learnBases(reply.data.nodes);
    renderCluster(reply.data);
  } catch (e) {
    $("cluster-note").textContent = `· ${e.message}`;
  }
}

renderRooms();
setOnline(false);
banner("connecting…", "");
pollMembers();
pollCluster();
setInterval(pollMembers, 1000);
setInterval(pollCluster, 1000);
window.goimDemo = { client, stats, mid, get nick() { return nick; } };
