// The supervisor console: queue tiles, the callers waiting, the agent grid and alerts, live from
// /v1/realtime/feed, and the floor controls (listen / whisper / barge through this browser as a WebRTC leg or
// through the supervisor's desk phone, agent state, sign-out, a caller to the front, taken or moved). The access
// token lives in memory only and goes in Authorization headers or a websocket's first message, never in a
// URL; the refresh cookie is HttpOnly and SameSite=Strict (session.js).
"use strict";

const $ = (id) => document.getElementById(id);
const session = new BrowserSession();
// `calls`: agent id -> the contact the feed saw assigned to it (the realtime view may lag it).
const view = {queues: new Map(), agents: new Map(), queueNames: new Map(), calls: new Map(), waiting: [], waitingAt: 0};
let feed = null;
let reloadTimer = null;
let lagReads = 0; // re-reads of the realtime view since the last feed event, while it lags the feed
const LAG_READS = 30;
let monitor = null; // {contactId, legId, mode, and ws, pc, mic for the browser's leg or phone for a phone}
const PHONE_KEY = "switchboard.supervisor.phone"; // where this browser remembers the desk phone (not a secret)

function show(id) {
  for (const v of ["signin-view", "console-view"]) $(v).classList.toggle("hidden", v !== id);
  $("who").classList.toggle("hidden", id !== "console-view");
}

async function api(method, path, body) {
  const token = await session.fresh();
  const r = await fetch(path, {
    method,
    headers: {Authorization: `Bearer ${token}`, ...(body ? {"Content-Type": "application/json"} : {})},
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.detail || `the server answered ${r.status}`);
  return data;
}

function duration(s) {
  if (s == null) return "–";
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m ${String(s % 60).padStart(2, "0")}s` : `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}
const pct = (x) => (x == null ? "–" : `${Math.round(x * 100)}%`);
const label = (state) => ({on_contact: "On a call", wrap_up: "Wrap-up", logged_out: "Signed out", reserved: "Ringing"}[state]
  || state.charAt(0).toUpperCase() + state.slice(1).replace(/_/g, " "));
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (k === "class") e.className = v; else e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
};

// -- data --------------------------------------------------------------------------------------------

function takeQueues(body) {
  const before = new Map(view.queues);
  view.queues.clear();
  for (const q of body.queues) {
    const fresh = {...q, seenAt: Date.now()};
    // As for agents: routing's figures the feed brought after the view's snapshot of them stay.
    const was = before.get(q.queue_id);
    if (was && was.statsAt && (!q.snapshot_at || was.statsAt > Date.parse(q.snapshot_at))) {
      Object.assign(fresh, {waiting: was.waiting, longest_wait_s: was.longest_wait_s, agents: was.agents,
        ready: was.ready, seenAt: was.seenAt, statsAt: was.statsAt});
    }
    view.queues.set(q.queue_id, fresh);
    view.queueNames.set(q.queue_id, q.queue_name);
  }
  $("queues-since").textContent = "today since " + new Date(body.since).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

// Returns whether the view lags the feed (an agent's change not in reporting's facts yet).
function takeAgents(body) {
  const before = new Map(view.agents);
  view.agents.clear();
  let lags = false;
  for (const a of body.agents) {
    const fresh = {...a, seenAt: Date.now()};
    // The realtime view is read from reporting's facts and may lag the feed: a state the feed announced
    // after the view's own change stays.
    const was = before.get(a.agent_id);
    if (was && was.stateAt && (!a.since || was.stateAt > Date.parse(a.since))) {
      Object.assign(fresh, {state: was.state, reason: was.reason, stateAt: was.stateAt,
        time_in_state_s: (Date.now() - was.stateAt) / 1000});
      lags ||= !a.since || was.stateAt >= Date.parse(a.since) + 1; // the view's time is in whole ms
    }
    view.agents.set(a.agent_id, fresh);
  }
  return lags;
}

async function reload() {
  const [queues, agents, waiting] = await Promise.all([
    api("GET", "/v1/realtime/queues"), api("GET", "/v1/realtime/agents"), api("GET", "/v1/realtime/waiting"),
  ]);
  takeQueues(queues);
  // Nothing else re-reads the view once reporting catches up (the feed's events came before): read it
  // again while it lags, so today's figures (quality, handled) follow, for a while if reporting is down.
  if (takeAgents(agents) && lagReads++ < LAG_READS) {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(() => reload().catch(() => {}), 1000);
  }
  view.waiting = waiting.contacts;
  view.waitingAt = Date.now();
  render();
  charts(queues.since).catch(() => {});
}

// -- charts (uPlot, vendored): today's volume and service level per half hour, all queues together ------

const plots = {};
let chartSpan = [0, 1]; // today, from local midnight to the half hour after now (epoch seconds)
window.supervisorCharts = plots; // what is drawn, for the browser test to read

async function charts(since) {
  const report = await api("GET", `/v1/reports/queues?from=${encodeURIComponent(since)}&interval=30m`);
  const by = new Map();
  for (const r of report.rows) {
    const t = Date.parse(r.interval_start) / 1000;
    const b = by.get(t) || {offered: 0, answered: 0, abandoned: 0, within: 0, closed: 0};
    b.offered += r.offered; b.answered += r.answered; b.abandoned += r.abandoned_short + r.abandoned_long;
    b.within += r.answered_within; b.closed += r.answered + r.abandoned_long;
    by.set(t, b);
  }
  const times = [...by.keys()].sort((a, b) => a - b);
  chartSpan = [Date.parse(since) / 1000, Math.ceil(Date.now() / 1800000) * 1800];
  const col = (f) => times.map((t) => f(by.get(t)));
  const volume = [times, col((b) => b.offered), col((b) => b.answered), col((b) => b.abandoned)];
  const target = Math.max(0, ...[...view.queues.values()].map((q) => q.sl_target ?? 0));
  const sl = [times, col((b) => (b.closed ? Math.round((100 * b.within) / b.closed) : null)), times.map(() => target * 100)];
  draw("volume-chart", volume, [
    {label: "Offered", stroke: "#1f5eff", width: 2},
    {label: "Answered", stroke: "#14804a", width: 2},
    {label: "Abandoned", stroke: "#c6262e", width: 2},
  ], {range: [0, null]});
  draw("sl-chart", sl, [
    {label: "Service level %", stroke: "#14804a", width: 2, fill: "#14804a18", points: {show: true}},
    {label: view.queues.size > 1 ? "Highest queue target" : "Target", stroke: "#b86e00", dash: [6, 4], width: 1.5, points: {show: false}},
  ], {range: [0, 100]});
}

function draw(id, data, series, y) {
  const node = $(id);
  const width = Math.max(280, node.clientWidth || 500);
  if (plots[id]) {
    plots[id].setData(data);
    return;
  }
  plots[id] = new uPlot({
    width, height: 190,
    scales: {x: {time: true, range: () => chartSpan}, y: {range: (u, min, max) => [y.range[0], y.range[1] ?? Math.max(4, max + 1)]}},
    axes: [{}, {size: 40}],
    series: [{}, ...series],
    legend: {show: true},
  }, data, node);
}

function reloadSoon() {
  lagReads = 0;
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => reload().catch(() => {}), 150);
}

async function connectFeed() {
  const token = await session.fresh();
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/realtime/feed`);
  feed = ws;
  ws.onopen = () => ws.send(JSON.stringify({type: "auth", token}));
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "snapshot") {
      takeQueues(m.queues); takeAgents(m.agents);
      $("live").textContent = "Live"; $("live").classList.add("on");
    } else if (m.type === "queue") {
      const q = view.queues.get(m.queue_id);
      if (q) Object.assign(q, {waiting: m.waiting, longest_wait_s: m.longest_wait_s, agents: m.agents, ready: m.ready,
        seenAt: Date.now(), statsAt: m.ts * 1000});
    } else if (m.type === "agent") {
      const a = view.agents.get(m.agent_id);
      if (a) Object.assign(a, {state: m.state, reason: m.reason, time_in_state_s: 0, seenAt: Date.now(), stateAt: m.ts * 1000});
      reloadSoon();
    } else if (m.type === "contact") {
      if (m.event === "assigned" && m.agent_id) view.calls.set(m.agent_id, {contact: m.contact_id, queue: m.queue_id});
      if (["ended", "abandoned", "wrapped_up"].includes(m.event)) {
        for (const [agent, call] of view.calls) if (call.contact === m.contact_id) view.calls.delete(agent);
      }
      reloadSoon(); // today's totals and current contacts come from the realtime view
    } else if (m.type === "error") {
      $("live").textContent = "Offline";
    }
    if (m.missed) reloadSoon();
    render();
  };
  ws.onclose = () => {
    $("live").textContent = "Reconnecting…"; $("live").classList.remove("on");
    if (feed === ws && session.token) setTimeout(() => connectFeed().catch(() => {}), 1000);
  };
}

// -- rendering ---------------------------------------------------------------------------------------

// What a part of the page shows, without the clock: a part is rebuilt only when this changes, so buttons
// do not move under the pointer while durations count (tick()).
const shown = {tiles: "", agents: "", waiting: ""};
const agentSig = (a) => [a.agent_id, a.name, a.state, a.reason, a.current_contact, a.current_queue, a.handled_today,
  a.aht_s, a.time_in_state_s, a.seenAt, view.calls.get(a.agent_id)?.contact];

function render() {
  const now = Date.now();
  const alerts = [];
  const tiles = $("tiles");
  const tilesSig = JSON.stringify([...view.queues.values()]);
  const agentsSig = JSON.stringify([...view.agents.values()].map(agentSig));
  if (tilesSig !== shown.tiles) {
    shown.tiles = tilesSig;
    renderTiles(now, tiles, alerts);
  }
  if (agentsSig !== shown.agents) {
    shown.agents = agentsSig;
    renderAgents(now);
  }
  const waitingSig = JSON.stringify([view.waiting, [...view.queueNames]]);
  if (waitingSig !== shown.waiting) {
    shown.waiting = waitingSig;
    renderWaiting();
  }
}

// The tenant's notification policy as the API resolved it for this queue (q.thresholds), applied to the
// live figures (services/reporting/alerts.py does the same on the server): the longest wait keeps counting.
function queueAlerts(q, now) {
  const t = q.thresholds || {longest_wait_s: q.sl_seconds, service_level_below: q.sl_target};
  const out = [];
  const longest = q.waiting ? q.longest_wait_s + (now - q.seenAt) / 1000 : 0;
  if (q.waiting > 0 && t.longest_wait_s != null && longest > t.longest_wait_s) {
    out.push({kind: "longest_wait", text: `a caller has waited ${duration(longest)}, over ${duration(t.longest_wait_s)}`});
  }
  const closed = q.answered + q.abandoned_long;
  if (closed > 0 && q.service_level != null && t.service_level_below != null && q.service_level < t.service_level_below) {
    out.push({kind: "service_level", text: `service level ${pct(q.service_level)} today is under ${pct(t.service_level_below)}`});
  }
  if (t.waiting_over != null && q.waiting > t.waiting_over) {
    out.push({kind: "waiting", text: `${q.waiting} callers waiting, over ${t.waiting_over}`});
  }
  const agents = Object.entries(q.agents || {}).filter(([state]) => state !== "logged_out");
  const signedIn = agents.reduce((n, [, c]) => n + c, 0);
  const away = (q.agents || {}).away || 0;
  if (t.away_over != null && signedIn > 0 && away / signedIn > t.away_over) {
    out.push({kind: "away", text: `${pct(away / signedIn)} of signed-in agents are away, over ${pct(t.away_over)}`});
  }
  return out;
}

function policyLine(q) {
  const t = q.thresholds;
  if (!t) return "";
  const parts = [`wait > ${duration(t.longest_wait_s)}`, `SL < ${pct(t.service_level_below)}`];
  if (t.waiting_over != null) parts.push(`waiting > ${t.waiting_over}`);
  if (t.away_over != null) parts.push(`away > ${pct(t.away_over)}`);
  return "Alerts: " + parts.join(" · ");
}

function renderTiles(now, tiles, alerts) {
  tiles.replaceChildren();
  for (const q of [...view.queues.values()].sort((a, b) => a.queue_name.localeCompare(b.queue_name))) {
    const longest = q.waiting ? q.longest_wait_s + (now - q.seenAt) / 1000 : 0;
    const closed = q.answered + q.abandoned_long;
    const crossed = queueAlerts(q, now);
    const slBad = crossed.some((a) => a.kind === "service_level");
    const waitBad = crossed.some((a) => a.kind === "longest_wait");
    for (const a of crossed) alerts.push(`${q.queue_name}: ${a.text}`);
    const bar = el("div", {class: "sl-bar" + (slBad ? " bad" : "")}, el("span"));
    bar.firstChild.style.width = `${Math.round((q.service_level ?? 0) * 100)}%`;
    const stat = (name, value, cls = "") => el("div", {}, el("span", {class: "label"}, name), el("b", {class: cls}, value));
    const ready = q.ready ?? 0;
    tiles.append(el("article", {class: "tile" + (crossed.length ? " alert" : ""), "data-queue": q.queue_name},
      el("h3", {}, q.queue_name, el("span", {class: "muted small"}, `${ready} ready`)),
      el("div", {class: "label"}, "Waiting now"),
      el("div", {class: "big waiting"}, String(q.waiting)),
      el("div", {class: "row"},
        ticking(stat("Longest wait", duration(longest), waitBad ? "bad" : ""), q.waiting ? q.longest_wait_s : null, q.seenAt),
        stat(`SL today (${q.sl_seconds}s)`, `${pct(q.service_level)} / ${pct(q.sl_target)}`, slBad ? "bad" : closed ? "good" : ""),
        stat("ASA", q.asa_s == null ? "–" : duration(q.asa_s)),
        stat("Abandoned", String(q.abandoned_short + q.abandoned_long)),
        stat("Offered", String(q.offered)),
        stat("Answered", String(q.answered))),
      bar,
      el("div", {class: "policy muted small"}, policyLine(q))));
  }
  $("no-queues").classList.toggle("hidden", view.queues.size > 0);
  showAlerts(alerts);
}

function renderAgents(now) {
  const rows = $("agents");
  rows.replaceChildren();
  for (const a of [...view.agents.values()].sort((x, y) => x.name.localeCompare(y.name))) {
    const inState = a.time_in_state_s == null ? null : a.time_in_state_s + (now - a.seenAt) / 1000;
    const live = view.calls.get(a.agent_id);
    const busy = ["on_contact", "wrap_up", "busy"].includes(a.state);
    const current = a.current_contact || (busy && live ? live.contact : null);
    const queue = a.current_contact ? a.current_queue : live && live.queue;
    const contact = current
      ? el("span", {}, el("span", {class: "muted"}, view.queueNames.get(queue) || "Direct"), " · ",
          el("code", {class: "small"}, current.slice(0, 8)))
      : el("span", {class: "muted"}, "–");
    const actions = el("td", {class: "actions"});
    if (current && a.state === "on_contact") {
      const listen = el("button", {"data-action": "listen"}, "Listen");
      listen.onclick = () => startMonitor(current, a.name).catch((err) => alert(err.message));
      actions.append(listen);
    }
    if (a.state !== "logged_out") {
      const away = a.state === "away";
      const toggle = el("button", {"data-action": away ? "available" : "away"}, away ? "Make available" : "Set away");
      toggle.onclick = () => api("POST", `/v1/agents/${a.agent_id}/state`, away ? {state: "available"} : {state: "away", reason: "meeting"})
        .then(reloadSoon).catch((err) => alert(err.message));
      const out = el("button", {"data-action": "signout", class: "stop"}, "Sign out");
      out.onclick = () => {
        if (!confirm(`Sign ${a.name} out? Their desk closes now.`)) return;
        api("POST", `/v1/agents/${a.agent_id}/signout`).then(reloadSoon).catch((err) => alert(err.message));
      };
      actions.append(toggle, out);
    }
    rows.append(el("tr", {"data-agent": a.email},
      el("td", {}, el("strong", {}, a.name), el("div", {class: "muted small"}, a.email)),
      el("td", {}, el("span", {class: `pill ${a.state}`}, label(a.state)), a.reason && a.state === "away" ? el("span", {class: "muted small"}, ` ${a.reason}`) : ""),
      ticking(el("td", {}, duration(inState)), a.time_in_state_s, a.seenAt),
      el("td", {class: "contact"}, contact),
      el("td", {class: "muted small"}, `${a.handled_today} handled` + (a.aht_s ? ` · AHT ${duration(a.aht_s)}` : "")),
      quality(a.quality),
      actions));
  }
  $("no-agents").classList.toggle("hidden", view.agents.size > 0);
  $("agents-table").classList.toggle("hidden", view.agents.size === 0);
}

// Today's answer rate (offers taken), missed offers and occupancy; a missed offer is flagged.
function quality(q) {
  const td = el("td", {class: "agent-quality small"});
  if (!q || !q.offers) {
    td.append(el("span", {class: "muted"}, "no offers yet"));
    return td;
  }
  td.append(
    el("span", {title: "offers answered"}, `Answered ${pct(q.answer_rate)}`), " · ",
    el("span", {class: q.missed ? "bad" : "", title: "offers declined or not answered"}, `${q.missed} missed`), " · ",
    el("span", {title: "time on calls and wrap-up / time working"}, `Occupancy ${pct(q.occupancy)}`));
  return td;
}

// The callers in line, in routing's order per queue, each with the supervisor's hands on the line.
function renderWaiting() {
  const rows = $("waiting");
  rows.replaceChildren();
  const queues = [...view.queueNames].sort((a, b) => a[1].localeCompare(b[1]));
  for (const c of view.waiting) {
    const waitedFrom = c.queued_at ? Date.parse(c.queued_at) : null;
    const front = el("button", {"data-action": "front"}, "To front");
    front.disabled = c.position === 1;
    front.onclick = () => api("POST", `/v1/contacts/${c.contact_id}/front`).then(reloadSoon).catch((err) => alert(err.message));
    const take = el("button", {"data-action": "take", class: "primary"}, "Take it");
    take.title = "Offer this caller to you now (your agent profile, even while away)";
    take.onclick = () => api("POST", `/v1/contacts/${c.contact_id}/pull`, {}).then(reloadSoon).catch((err) => alert(err.message));
    const target = el("select", {"aria-label": "Move to queue"},
      el("option", {value: ""}, "Move to…"),
      ...queues.filter(([id]) => id !== c.queue_id).map(([id, name]) => el("option", {value: id}, name)));
    target.onchange = () => {
      if (!target.value) return;
      api("POST", `/v1/contacts/${c.contact_id}/queue`, {queue: target.value}).then(reloadSoon).catch((err) => alert(err.message));
    };
    const who = c.caller_name ? `${c.caller_name} · ${c.caller}` : (c.caller || "Anonymous");
    rows.append(el("tr", {"data-contact": c.contact_id},
      el("td", {class: "position"}, c.position == null ? "–" : String(c.position)),
      el("td", {}, el("strong", {}, who), el("div", {class: "muted small"}, el("code", {}, c.contact_id.slice(0, 8)))),
      el("td", {}, c.queue_name || view.queueNames.get(c.queue_id) || "–"),
      ticking(el("td", {}, duration(waitedFrom ? (Date.now() - waitedFrom) / 1000 : null)), waitedFrom ? (Date.now() - waitedFrom) / 1000 : null, Date.now()),
      el("td", {class: "actions"}, front, take, target)));
  }
  $("no-waiting").classList.toggle("hidden", view.waiting.length > 0);
  $("waiting-table").classList.toggle("hidden", view.waiting.length === 0);
}

// A duration shown in `node` (or its <b>) that goes on counting from `base` seconds at `at` (ms).
function ticking(node, base, at) {
  if (base != null) { node.dataset.base = String(base); node.dataset.at = String(at); }
  return node;
}

function showAlerts(alerts) {
  const text = alerts.join("\n");
  if ($("alerts").dataset.text === text) return;
  $("alerts").dataset.text = text;
  $("alerts").replaceChildren(...alerts.map((a) => el("div", {}, a)));
}

// Every second: the counting durations and the wait alerts, without rebuilding the page (buttons stay put).
function tick() {
  const now = Date.now();
  for (const node of document.querySelectorAll("[data-base]")) {
    const target = node.querySelector("b") || node;
    target.textContent = duration(Number(node.dataset.base) + (now - Number(node.dataset.at)) / 1000);
  }
  const alerts = [];
  for (const q of [...view.queues.values()].sort((a, b) => a.queue_name.localeCompare(b.queue_name))) {
    const crossed = queueAlerts(q, now);
    for (const a of crossed) alerts.push(`${q.queue_name}: ${a.text}`);
    const tile = document.querySelector(`article[data-queue="${CSS.escape(q.queue_name)}"]`);
    if (tile) tile.classList.toggle("alert", crossed.length > 0);
  }
  showAlerts(alerts);
}

// -- listen / whisper / barge ------------------------------------------------------------------------

async function openLeg(contactId) {
  const token = await session.fresh();
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`);
  const inbox = [];
  let wake = null;
  ws.onmessage = (e) => { inbox.push(JSON.parse(e.data)); if (wake) wake(); };
  const next = async (type) => {
    for (;;) {
      const i = inbox.findIndex((m) => m.type === type || m.type === "error");
      if (i >= 0) {
        const m = inbox.splice(i, 1)[0];
        if (m.type === "error") throw new Error(m.reason);
        return m;
      }
      await new Promise((r) => { wake = r; setTimeout(r, 10000); });
    }
  };
  await new Promise((ok, bad) => { ws.onopen = ok; ws.onerror = () => bad(new Error("cannot reach the platform")); });
  ws.send(JSON.stringify({v: 1, type: "auth", token}));
  const ready = await next("ready");
  const pc = new RTCPeerConnection({iceServers: ready.ice_servers || []});
  const mic = await navigator.mediaDevices.getUserMedia({audio: true});
  for (const track of mic.getTracks()) pc.addTrack(track, mic);
  pc.ontrack = (e) => { $("monitor-audio").srcObject = e.streams[0] || new MediaStream([e.track]); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => {
    if (pc.iceGatheringState === "complete") return r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && r();
    setTimeout(r, 3000);
  });
  ws.send(JSON.stringify({v: 1, type: "offer", sdp: pc.localDescription.sdp, call_id: contactId}));
  const answer = await next("answer");
  await pc.setRemoteDescription({type: "answer", sdp: answer.sdp});
  await new Promise((ok, bad) => {
    if (pc.connectionState === "connected") return ok();
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected") ok();
      if (pc.connectionState === "failed") bad(new Error("the audio did not connect"));
    };
    setTimeout(() => bad(new Error("the audio did not connect in 10 s")), 10000);
  });
  return {ws, pc, mic, legId: answer.leg_id};
}

async function setMode(mode) {
  if (!monitor) return;
  if (monitor.legId) {
    await api("POST", `/v1/contacts/${monitor.contactId}/monitor`, {mode, leg_id: monitor.legId});
  } else {
    // The first step through the desk phone: the platform rings it; it is the leg once answered.
    const r = await api("POST", `/v1/contacts/${monitor.contactId}/monitor`, {mode, phone: monitor.phone});
    monitor.legId = r.leg_id;
  }
  monitor.mode = mode;
  $("monitor-title").textContent = {listen: "Listening", whisper: "Whispering to the agent", barge: "On the call (barge)"}[mode]
    + (monitor.phone ? " on your phone" : "");
  for (const b of document.querySelectorAll("button.mode")) b.setAttribute("aria-pressed", String(b.dataset.mode === mode));
}

async function startMonitor(contactId, agentName) {
  if (monitor && monitor.contactId !== contactId) await stopMonitor();
  if (!monitor) {
    $("monitor-panel").classList.remove("hidden");
    const phone = $("via-phone").checked ? $("phone").value.trim() : "";
    $("monitor-title").textContent = phone ? `Ringing ${phone}…` : "Connecting…";
    $("monitor-detail").textContent = `${agentName}'s call`;
    try {
      monitor = phone ? {contactId, phone, legId: null} : {contactId, ...(await openLeg(contactId))};
      await setMode("listen");
    } catch (err) {
      if (monitor && !monitor.phone) { monitor.pc.close(); monitor.ws.close(); }
      monitor = null;
      $("monitor-panel").classList.add("hidden");
      throw err;
    }
    return;
  }
  await setMode("listen");
}

async function stopMonitor() {
  if (!monitor) return;
  const m = monitor;
  monitor = null;
  // Leaving hangs up a desk phone the platform rang for it.
  if (m.legId) await api("POST", `/v1/contacts/${m.contactId}/monitor`, {mode: "none", leg_id: m.legId}).catch(() => {});
  if (!m.phone) {
    m.pc.close(); m.ws.close();
    for (const t of m.mic.getTracks()) t.stop();
  }
  $("monitor-panel").classList.add("hidden");
}

// -- start -------------------------------------------------------------------------------------------

async function begin(access) {
  if (access.role !== "supervisor" && access.role !== "admin") {
    await session.signOut();
    show("signin-view");
    $("signin-error").textContent = "This console is for supervisors and admins; agents use /agent.";
    return;
  }
  $("me").textContent = access.email;
  show("console-view");
  await reload();
  await connectFeed();
}

$("signin-form").onsubmit = async (e) => {
  e.preventDefault();
  $("signin-error").textContent = "";
  try {
    await begin(await session.signIn($("email").value, $("password").value));
  } catch (err) {
    $("signin-error").textContent = err.message;
  }
};
$("signout").onclick = async () => {
  await stopMonitor();
  const ws = feed; feed = null; if (ws) ws.close();
  await session.signOut();
  show("signin-view");
};
for (const b of document.querySelectorAll("button.mode")) b.onclick = () => setMode(b.dataset.mode).catch((err) => alert(err.message));
$("monitor-leave").onclick = () => stopMonitor();
$("phone").value = localStorage.getItem(PHONE_KEY) || "";
$("via-phone").checked = Boolean($("phone").value);
$("phone").onchange = () => {
  localStorage.setItem(PHONE_KEY, $("phone").value.trim());
  $("via-phone").checked = Boolean($("phone").value.trim());
};
session.addEventListener("ended", () => { show("signin-view"); $("signin-error").textContent = "Your session has ended: sign in again."; });
setInterval(tick, 1000);

session.resume().then((access) => (access ? begin(access) : show("signin-view"))).catch(() => show("signin-view"));
