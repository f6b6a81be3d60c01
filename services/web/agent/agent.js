// The agent desktop for a shift: sign-in (session.js), the agent protocol (protocol.js), and this page.
// One tab owns the desk (its socket and audio); another tab says so and can take it over. A dropped socket
// is reconnected with back-off while the call's audio goes on. Nothing a caller controls is ever parsed as
// HTML (textContent only). `window.agentDesktop` exposes the state for tests.
"use strict";

// docs/agent-protocol.md, "Reconnecting": at once, then about 0.1, 0.25, 0.5, 1, 2 s and every 3 s, well
// inside the tenant's grace (20 s by default), during which routing keeps the agent's seat and calls.
const RECONNECT_DELAYS_MS = [0, 100, 250, 500, 1000, 2000, 3000];
const QUALITY_EVERY_MS = 2000;
const DESK_LOCK = "switchboard-desk";
const STATE_LABELS = {
  available: "Available", away: "Away", reserved: "Ringing", on_contact: "On a call",
  wrap_up: "Wrap-up", logged_out: "Not taking calls", offline: "Offline",
};
const STATE_CLASS = {reserved: "ringing", on_contact: "on_call", logged_out: "offline"};
const SYSTEM_REASONS = {missed: "Missed a call", wrap_up: "Finishing wrap-up", other: "Away"};

const $ = (id) => document.getElementById(id);
const session = new BrowserSession();
const desk = {
  session, conn: null, me: null, colleagues: [], state: "offline", reason: null, presence: "available",
  offer: null, call: null, wrapUp: null, legs: new Map(), events: [], owner: false, reconnects: 0,
  devices: {mic: "", speaker: ""}, notes: [], banners: [],
};
window.agentDesktop = desk;

// -- small helpers ---------------------------------------------------------------------------------------

function view(name) {
  $("signin-view").classList.toggle("hidden", name !== "signin" && name !== "invite");
  $("signin-form").classList.toggle("hidden", name !== "signin");
  $("invite-form").classList.toggle("hidden", name !== "invite");
  $("desk-view").classList.toggle("hidden", name !== "desk");
  $("who").classList.toggle("hidden", name !== "desk");
}

function panel(name) {
  for (const p of ["idle", "offer", "call", "wrapup"]) $(`${p}-panel`).classList.toggle("hidden", p !== name);
}

function banner(text, {bad = false, action = null, onAction = null} = {}) {
  if (text) desk.banners.push(text);
  $("banner").classList.toggle("hidden", !text);
  $("banner").classList.toggle("bad", bad);
  $("banner-text").textContent = text || "";
  $("banner-action").classList.toggle("hidden", !action);
  $("banner-action").textContent = action || "";
  $("banner-action").onclick = onAction;
}

function note(text) {
  desk.notes.push(text);
  $("call-status").textContent = text;
  $("call-status").classList.remove("bad", "good");
}

const clock = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
const callerName = (ctx) =>
  (ctx && ctx.caller && ctx.caller.name) || (ctx && ctx.outbound && ctx.outbound.to) || "Unknown caller";
const callerNumber = (ctx) => (ctx && ctx.caller && ctx.caller.number) || "";
const agentName = (id) => (desk.colleagues.find((a) => a.id === id) || {}).name || "another agent";

function option(select, value, label) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = label;
  select.append(o);
  return o;
}

function api(path) {
  return fetch(path, {headers: {Authorization: `Bearer ${session.token}`}}).then(async (r) => {
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).detail || `HTTP ${r.status}`);
    return r.json();
  });
}

function send(type, fields = {}) {
  if (!desk.conn) return Promise.reject(new ProtocolError("offline", "not connected: reconnecting"));
  return desk.conn.request(type, fields);
}

async function act(what, promise) {
  try {
    return await promise;
  } catch (err) {
    note(`${what}: ${err.reason || err.message}`);
    return null;
  }
}

// -- state and presence ----------------------------------------------------------------------------------

function setState(state, reason) {
  desk.state = state;
  desk.reason = reason || null;
  const away = state === "away" && reason;
  const label = away ? `Away · ${reasonLabel(reason)}` : STATE_LABELS[state] || state;
  $("state").textContent = label;
  $("state").className = `pill ${STATE_CLASS[state] || state}`;
  const select = $("presence");
  if (state === "available" || state === "away") select.value = state === "available" ? "available" : `away:${reason || ""}`;
  select.disabled = !["available", "away", "logged_out"].includes(state);
  if (!desk.offer && !desk.call && !desk.wrapUp) {
    $("idle-title").textContent = state === "available" ? "Waiting for calls" : label;
    $("idle-text").textContent = state === "available" ? "Calls ring here. Keep this tab open."
      : "You get no calls while away. Choose Available to take calls.";
  }
}

function reasonLabel(code) {
  const mine = desk.me && desk.me.settings.away_reasons.find((r) => r.code === code);
  return mine ? mine.label : SYSTEM_REASONS[code] || code;
}

function renderPresence() {
  const select = $("presence");
  select.replaceChildren();
  option(select, "available", "Available");
  for (const r of desk.me.settings.away_reasons) option(select, `away:${r.code}`, `Away · ${r.label}`);
  option(select, "signout-calls", "Stop taking calls");
}

$("presence").onchange = async () => {
  const value = $("presence").value;
  askNotifications();
  if (value === "signout-calls") {
    if (await act("Stop taking calls", send("logout"))) setState("logged_out");
    return;
  }
  const [state, reason] = value.split(":");
  desk.presence = value;
  const ack = desk.state === "logged_out" || desk.state === "offline"
    ? await act("Sign in to calls", send("login", {state, reason: reason || undefined}))
    : await act("Status", send("state", {state, reason: reason || undefined}));
  if (ack) setState(state, reason);
};

// -- ringing: sound, notification, tab title, countdown --------------------------------------------------

const ring = {ctx: null, timers: [], title: null};

function startRinging(offer) {
  stopRinging();
  const ctx = new AudioContext();
  const out = ctx.createMediaStreamDestination();
  const gain = ctx.createGain();
  gain.gain.value = 0;
  gain.connect(out);
  for (const f of [440, 480]) {
    const osc = ctx.createOscillator();
    osc.frequency.value = f;
    osc.connect(gain);
    osc.start();
  }
  // The North American ring cadence: 2 s on, 4 s off.
  const burst = () => {
    const t = ctx.currentTime;
    gain.gain.setValueAtTime(0.15, t);
    gain.gain.setValueAtTime(0, t + 2);
  };
  burst();
  ring.timers.push(setInterval(burst, 6000));
  const ringer = $("ringer");
  ringer.srcObject = out.stream;
  if (desk.devices.speaker && ringer.setSinkId) ringer.setSinkId(desk.devices.speaker).catch(() => {});
  ringer.play().catch(() => {});
  ring.ctx = ctx;
  const name = callerName(offer.context);
  let flip = false;
  ring.timers.push(setInterval(() => {
    document.title = (flip = !flip) ? `☎ ${name} is calling` : "Incoming call · Switchboard";
  }, 1000));
  document.title = `☎ ${name} is calling`;
  if (window.Notification && Notification.permission === "granted" && document.hidden) {
    ring.notice = new Notification(`${name} is calling`, {body: callerNumber(offer.context), tag: "switchboard-offer"});
    ring.notice.onclick = () => window.focus();
  }
  const total = Math.max(1, offer.expires_at - Date.now() / 1000);
  const tick = () => {
    const left = Math.max(0, offer.expires_at - Date.now() / 1000);
    $("offer-bar").style.width = `${(100 * left) / total}%`;
    $("offer-left").textContent = `Answer within ${Math.ceil(left)} s`;
  };
  tick();
  ring.timers.push(setInterval(tick, 250));
}

function stopRinging() {
  for (const t of ring.timers.splice(0)) clearInterval(t);
  if (ring.ctx) ring.ctx.close();
  ring.ctx = null;
  $("ringer").srcObject = null;
  if (ring.notice) ring.notice.close();
  ring.notice = null;
  document.title = desk.me ? `${desk.me.agent.name} · Agent desktop` : "Agent desktop · Switchboard";
}

function askNotifications() {
  if (window.Notification && Notification.permission === "default") Notification.requestPermission().catch(() => {});
}

// -- the caller's context --------------------------------------------------------------------------------

function renderContext(ctx) {
  const dl = $("context");
  dl.replaceChildren();
  const row = (label, value) => {
    if (value === undefined || value === null || value === "") return;
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = label;
    dd.textContent = value;
    dl.append(dt, dd);
  };
  row("Caller", callerName(ctx));
  row("Number", callerNumber(ctx) || "withheld");
  row("Called", ctx.dialled);
  row("Queue", ctx.queue && ctx.queue.name);
  if (ctx.waited) row("Waited", `${Math.round((ctx.waited.ivr_s || 0) + (ctx.waited.queue_s || 0))} s (${Math.round(ctx.waited.queue_s || 0)} s in queue)`);
  if (ctx.ivr) {
    row("Menu path", (ctx.ivr.path || []).join(" › "));
    row("Pressed", ctx.ivr.digits);
  }
  // The platform's own bookkeeping (a voicemail's file, a consultation's origin) is not the caller's data.
  const internal = new Set(["kind", "file", "seconds", "voicemail_of", "consult_of"]);
  for (const [k, v] of Object.entries(ctx.attributes || {})) if (!k.startsWith("ivr.") && !internal.has(k)) row(k, String(v));
  if (ctx.voicemail) row("Message", `${Math.round(ctx.voicemail.seconds || 0)} s`);
  if (ctx.consult) row("Consultation from", `${agentName(ctx.consult.from_agent_id)}${ctx.consult.note ? `: “${ctx.consult.note}”` : ""}`);
  if (ctx.transfer) row("Transferred by", `${agentName(ctx.transfer.from_agent_id)}: “${ctx.transfer.note || "no note"}”`);
  if (ctx.history) {
    row("Calls today", String(ctx.history.today || 0));
    for (const c of ctx.history.last || []) {
      row("Earlier", `${new Date(c.at).toLocaleString()} · ${c.queue}: ${c.outcome}${c.disposition ? ` (${c.disposition})` : ""}`);
    }
  }
}

// -- offers, calls, wrap-up ------------------------------------------------------------------------------

function endLeg(contactId) {
  const leg = desk.legs.get(contactId);
  if (leg) {
    leg.close();
    desk.legs.delete(contactId);
  }
}

// The leg's network path was lost and comes back (an ICE restart, protocol.js Leg.restart). The socket's
// banners say what the call's audio does meanwhile (callAudio).
const AUDIO_STATE = {
  reconnecting: "Call audio lost: reconnecting…",
  connected: "Call audio reconnected.",
};

function audioState(contactId, state) {
  if (desk.call && desk.call.contact_id !== contactId) return;
  desk.audio = state;
  note(AUDIO_STATE[state]);
  $("call-status").classList.add(state === "reconnecting" ? "bad" : "good");
}

// The socket and the audio are separate paths: what the banner says of the call's audio while the socket is away.
const callAudio = () => !desk.call ? "" : desk.audio === "reconnecting" ? " Your call's audio is reconnecting." : " Your call's audio continues.";

function onOffer(offer) {
  desk.offer = offer;
  const ctx = offer.context || {};
  if (offer.outbound) return onOutbound(offer, ctx);
  if (offer.task === "voicemail") return onVoicemailOffer(offer, ctx);
  $("offer-caller").textContent = callerName(ctx);
  $("offer-number").textContent = callerNumber(ctx);
  $("offer-queue").textContent = [ctx.queue && `for ${ctx.queue.name}`, ctx.transfer && `transferred by ${agentName(ctx.transfer.from_agent_id)}`]
    .filter(Boolean).join(" · ");
  // A consultation: a colleague wants to talk about this caller first (the caller waits on music).
  $("offer-panel").querySelector(".ringing-label").textContent = ctx.consult
    ? `${agentName(ctx.consult.from_agent_id)} asks you to take a call` : "Incoming call";
  if (ctx.consult) $("offer-queue").textContent = `Consultation${ctx.consult.note ? `: “${ctx.consult.note}”` : ""} · the caller is on hold`;
  renderContext(ctx);
  panel("offer");
  startRinging(offer);
  const leg = new Leg({
    send, contactId: offer.contact_id, callId: offer.call_id, iceServers: desk.iceServers, audio: $("remote"),
    micId: desk.devices.mic, onNote: note, onAudio: (state) => audioState(offer.contact_id, state),
  });
  desk.legs.set(offer.contact_id, leg);
  act("Audio", leg.start());
}

// A voicemail a caller left: offered like a call, without audio legs; the message is fetched once taken.
function onVoicemailOffer(offer, ctx) {
  $("offer-caller").textContent = callerName(ctx);
  $("offer-number").textContent = callerNumber(ctx);
  const seconds = Math.round((ctx.voicemail && ctx.voicemail.seconds) || 0);
  $("offer-queue").textContent = `A ${seconds} s message${ctx.queue && ctx.queue.name ? ` for ${ctx.queue.name}` : ""}`;
  $("offer-panel").querySelector(".ringing-label").textContent = "Voicemail";
  renderContext(ctx);
  panel("offer");
  startRinging(offer);
}

async function showVoicemail(ctx) {
  for (const id of ["hold", "mute", "keypad-button", "transfer-button", "record", "hangup"]) $(id).classList.add("hidden");
  $("voicemail").classList.remove("hidden");
  $("voicemail-text").textContent = `${callerName(ctx)} left a message. Listen, then call back or press Done listening.`;
  $("voicemail-callback").disabled = !callerNumber(ctx);
  // The url answers with a redirect to the message's signed URL; 503 while the platform is still storing it.
  let r;
  for (let attempt = 0; attempt < 3; attempt++) {
    r = await fetch(ctx.voicemail.url, {headers: {Authorization: `Bearer ${session.token}`}}).catch((err) => err);
    if (r instanceof Error || r.status !== 503) break;
    note("The message is still being stored: trying again in a moment.");
    await new Promise((done) => setTimeout(done, 1000 * Number(r.headers.get("Retry-After") || 5)));
  }
  if (r instanceof Error || !r.ok) return note("The message could not be loaded.");
  desk.voicemailUrl = URL.createObjectURL(await r.blob());
  $("voicemail-audio").src = desk.voicemailUrl;
  $("voicemail-audio").play().catch(() => {});
}

function hideVoicemail() {
  $("voicemail").classList.add("hidden");
  for (const id of ["hold", "mute", "keypad-button", "transfer-button", "hangup"]) $(id).classList.remove("hidden");
  $("voicemail-audio").removeAttribute("src");
  if (desk.voicemailUrl) URL.revokeObjectURL(desk.voicemailUrl);
  desk.voicemailUrl = null;
}

$("voicemail-done").onclick = () => desk.call && act("Done", send("hangup", {contact_id: desk.call.contact_id}));
$("voicemail-callback").onclick = async () => {
  if (!desk.call) return;
  const to = callerNumber(desk.call.context);
  // One click: the message is done; once its outcome is saved (Done), the desk dials the caller.
  if (await act("Call back", send("hangup", {contact_id: desk.call.contact_id}))) desk.callBack = to;
};

// The agent's own outbound call (the dial box, or click-to-dial from a CRM): no ringing, its leg is made and
// the offer accepted at once; the number is dialled once the leg is up.
function onOutbound(offer, ctx) {
  const to = (ctx.outbound && ctx.outbound.to) || "";
  $("offer-caller").textContent = `Calling ${to}`;
  $("offer-number").textContent = ctx.outbound ? `from ${ctx.outbound.caller_id}` : "";
  $("offer-queue").textContent = ctx.queue ? `for ${ctx.queue.name}` : "";
  $("offer-panel").querySelector(".ringing-label").textContent = "Outbound call";
  renderContext(ctx);
  panel("offer");
  const leg = new Leg({
    send, contactId: offer.contact_id, callId: offer.call_id, iceServers: desk.iceServers, audio: $("remote"),
    micId: desk.devices.mic, onNote: note, onAudio: (state) => audioState(offer.contact_id, state),
  });
  desk.legs.set(offer.contact_id, leg);
  act("Call", leg.start().then(() => send("accept", {contact_id: offer.contact_id, offer_id: offer.offer_id})));
}

$("dial-form").onsubmit = async (e) => {
  e.preventDefault();
  const to = $("dial-to").value.trim();
  $("dial-error").textContent = "";
  $("dial-go").disabled = true;
  try {
    await send("dial", {to});
    $("dial-to").value = "";
  } catch (err) {
    $("dial-error").textContent = err.reason || err.message;  // not allowed, do-not-call, not available...
  } finally {
    $("dial-go").disabled = false;
  }
};

function showRecording(state) {
  const on = state === "on" || state === "paused";
  $("record").classList.toggle("hidden", !on);
  $("recording").classList.toggle("hidden", !on);
  $("recording").classList.toggle("paused", state === "paused");
  $("recording").textContent = state === "paused" ? "Recording paused" : "● Recording";
  $("record").setAttribute("aria-pressed", String(state === "paused"));
  $("record").textContent = state === "paused" ? "Resume recording" : "Pause recording";
}

$("record").onclick = async () => {
  if (!desk.call) return;
  const on = $("record").getAttribute("aria-pressed") !== "true";
  const ack = await act("Recording", send("record_pause", {contact_id: desk.call.contact_id, on}));
  if (ack) showRecording(ack.recording || (on ? "paused" : "on"));
};

function onConnected(contactId, recording, consulted, task) {
  stopRinging();
  const ctx = desk.offer && desk.offer.contact_id === contactId ? desk.offer.context : (desk.call || {}).context || {};
  desk.call = {contact_id: contactId, context: ctx, since: Date.now(), held: false, muted: false, consulted: !!consulted};
  desk.offer = null;
  $("call-caller").textContent = callerName(ctx);
  $("call-number").textContent = callerNumber(ctx);
  $("call-status").textContent = "";
  for (const id of ["hold", "mute"]) $(id).setAttribute("aria-pressed", "false");
  showRecording(recording || "off");
  showMonitored("none");
  toggle("keypad", false);
  toggle("transfer", false);
  showConsult(null);
  panel("call");
  hideVoicemail();
  if (task === "voicemail") showVoicemail(ctx);
  // Consulted: only hanging up is ours until the colleague hands the caller over.
  for (const id of ["hold", "keypad-button", "transfer-button", "record"]) $(id).disabled = !!consulted;
  if (consulted) {
    const from = ctx.consult ? agentName(ctx.consult.from_agent_id) : "Your colleague";
    note(`You are talking with ${from}; ${callerName(ctx)} is on hold. ${from} decides whether to hand the call to you.`);
  }
  const leg = desk.legs.get(contactId);
  const speaker = desk.devices.speaker;
  if (speaker && $("remote").setSinkId) $("remote").setSinkId(speaker).catch(() => {});
  desk.call.timer = setInterval(async () => {
    $("call-timer").textContent = clock((Date.now() - desk.call.since) / 1000);
  }, 500);
  desk.call.quality = setInterval(async () => {
    const q = leg && (await leg.quality().catch(() => null));
    $("quality").className = `quality ${q ? q.level : ""}`;
    $("quality").querySelector("span").textContent = q ? {good: "Good", fair: "Fair", poor: "Poor"}[q.level] : "—";
    $("quality").title = q ? `loss ${(q.loss * 100).toFixed(1)} %, jitter ${Math.round(q.jitter * 1000)} ms, round trip ${Math.round(q.rtt * 1000)} ms` : "";
  }, QUALITY_EVERY_MS);
}

// The tenant tells its agents when a supervisor steps in (settings monitor_notice agent or both).
const MONITORED = {
  listen: "A supervisor is listening to this call.",
  whisper: "A supervisor is whispering to you (the caller does not hear them).",
  barge: "A supervisor barged in: the caller hears them too.",
};

function showMonitored(mode) {
  const line = $("monitored");
  line.textContent = MONITORED[mode] || "";
  line.classList.toggle("hidden", !MONITORED[mode]);
}

function onMonitorNotice(detail) {
  if (!desk.call || desk.call.contact_id !== detail.contact_id) return;
  showMonitored(detail.mode);
  if (detail.mode === "none") note("The supervisor left the call.");
}

function onEnded(detail) {
  endLeg(detail.contact_id);
  stopRinging();
  const call = desk.call && desk.call.contact_id === detail.contact_id ? desk.call : null;
  if (call) {
    clearInterval(call.timer);
    clearInterval(call.quality);
  }
  const ctx = call ? call.context : {};
  desk.call = null;
  desk.audio = null;
  showConsult(null);
  showMonitored("none");
  hideVoicemail();
  if (detail.consult) {
    // A consultation that ended before the caller was handed over: nothing of it to wrap up here.
    panel("idle");
    setState(desk.state, desk.reason);
    const why = {consult_cancelled: "went back to the caller", consult_caller_hung_up: "ended: the caller hung up"}[detail.cause];
    $("idle-text").textContent = `The consultation ${why || "ended"}.`;
    return;
  }
  if (detail.cause === "transferred" && !detail.wrap_up) {
    // The contact went on to another agent or queue with its note: nothing of it is left to wrap up here.
    panel("idle");
    setState(desk.state, desk.reason);
    $("idle-text").textContent = `You transferred ${callerName(ctx)}'s call.`;
    return;
  }
  const queue = desk.me && ctx.queue && desk.me.queues.find((q) => q.id === ctx.queue.id);
  const seconds = queue ? queue.wrap_up_seconds : 30;
  desk.wrapUp = {contact_id: detail.contact_id, ends: Date.now() + seconds * 1000, holding: false, touched: false};
  $("wrap-caller").textContent = callerName(ctx);
  const who = detail.cause === "transferred" ? `You handed the call to ${agentName(desk.consultWith)}`
    : detail.cause === "voicemail_done" ? "You listened to the message"
    : {caller: "The caller hung up", agent: "You hung up", system: "The call was ended"}[detail.by] || "The call ended";
  $("wrap-summary").textContent = `${who} after ${clock(detail.duration || 0)}.`;
  $("disposition").value = "";
  $("notes").value = "";
  $("wrap-note").textContent = desk.callBack ? `Press Done to call ${desk.callBack} back.` : "";
  panel("wrapup");
  desk.wrapUp.timer = setInterval(wrapTick, 500);
  wrapTick();
}

function wrapTick() {
  const w = desk.wrapUp;
  if (!w) return;
  const left = Math.max(0, (w.ends - Date.now()) / 1000);
  $("wrap-left").textContent = left > 0 ? `${clock(left)} left` : "time is up";
  if (left > 0) return;
  $("wrap-note").textContent = w.holding
    ? "Take your time: you get no calls until you press Done."
    : "Wrap-up time is over and calls may ring; your outcome and notes are still saved when you press Done.";
}

// The tenant may let an open form extend wrap-up: the desk then holds the agent away until Done.
async function holdForForm() {
  const w = desk.wrapUp;
  if (!w || w.touched) return;
  w.touched = true;
  if (!desk.me.settings.wrap_up_form_extends || desk.presence !== "available") return;
  if (await act("Wrap-up", send("state", {state: "away", reason: "wrap_up"}))) w.holding = true;
}
$("notes").addEventListener("input", holdForForm);
$("disposition").addEventListener("change", holdForForm);

$("wrap").onclick = async () => {
  const w = desk.wrapUp;
  if (!w) return;
  const disposition = $("disposition").value;
  if (!disposition) {
    $("wrap-note").textContent = "Choose an outcome first.";
    $("disposition").focus();
    return;
  }
  const ack = await act("Wrap-up", send("wrap_up", {contact_id: w.contact_id, disposition, notes: $("notes").value || undefined}));
  if (!ack) return;
  clearInterval(w.timer);
  desk.wrapUp = null;
  if (w.holding) await act("Status", send("state", {state: "available"}));
  panel("idle");
  setState(desk.state, desk.reason);
  const to = desk.callBack;
  desk.callBack = null;
  // A voicemail's "Call back": the outcome is saved, now the call (the dial box's own command).
  if (to) act("Call back", send("dial", {to}));
};

$("accept").onclick = async () => {
  const o = desk.offer;
  if (!o) return;
  stopRinging();
  $("accept").disabled = true;
  await act("Answer", send("accept", {contact_id: o.contact_id, offer_id: o.offer_id}));
  $("accept").disabled = false;
};
$("reject").onclick = async () => {
  const o = desk.offer;
  if (!o) return;
  stopRinging();
  await act("Decline", send("reject", {contact_id: o.contact_id, offer_id: o.offer_id}));
  endLeg(o.contact_id);
  desk.offer = null;
  panel("idle");
};
for (const type of ["hold", "mute"]) {
  $(type).onclick = async () => {
    const on = $(type).getAttribute("aria-pressed") !== "true";
    if (desk.call && (await act(type === "hold" ? "Hold" : "Mute", send(type, {contact_id: desk.call.contact_id, on})))) {
      $(type).setAttribute("aria-pressed", String(on));
      $(type).textContent = on ? (type === "hold" ? "Resume" : "Unmute") : type === "hold" ? "Hold" : "Mute";
      $("call-status").textContent = [$("hold").getAttribute("aria-pressed") === "true" && "The caller is on hold (music).",
        $("mute").getAttribute("aria-pressed") === "true" && "Muted: the caller cannot hear you."].filter(Boolean).join(" ");
    }
  };
}
$("hangup").onclick = () => desk.call && act("Hang up", send("hangup", {contact_id: desk.call.contact_id}));

function toggle(id, on) {
  $(id).classList.toggle("hidden", !on);
  $(`${id}-button`).setAttribute("aria-expanded", String(on));
}

for (const key of ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"]) {
  const b = document.createElement("button");
  b.textContent = key;
  b.onclick = () => desk.call && act("Keypad", send("dtmf", {contact_id: desk.call.contact_id, digits: key}));
  $("keypad").append(b);
}
$("keypad-button").onclick = () => toggle("keypad", $("keypad").classList.contains("hidden"));

async function openTransfer() {
  toggle("transfer", true);
  const queues = $("transfer-queue");
  queues.replaceChildren();
  for (const q of desk.me.queues) option(queues, q.id, q.name);
  const flows = $("transfer-flow");
  flows.replaceChildren();
  for (const name of desk.me.flows || []) option(flows, name, name);
  if (!flows.options.length) option(flows, "", "No surveys or menus");
  const agents = $("transfer-agent");
  agents.replaceChildren();
  option(agents, "", "Loading agents…");
  const list = await api("/v1/desk/agents").catch(() => ({items: []}));
  desk.colleagues = list.items;
  agents.replaceChildren();
  const order = {available: 0, away: 2, logged_out: 3};
  for (const a of [...list.items].sort((x, y) => (order[x.state] ?? 1) - (order[y.state] ?? 1))) {
    option(agents, a.id, `${a.name} — ${STATE_LABELS[a.state] || a.state}`).disabled = a.state !== "available";
  }
  if (!agents.options.length) option(agents, "", "No other agents");
}
$("transfer-button").onclick = () => ($("transfer").classList.contains("hidden") ? openTransfer() : toggle("transfer", false));
$("transfer-cancel").onclick = () => toggle("transfer", false);
const TRANSFER_TABS = {"to-queue-tab": "transfer-queue", "to-agent-tab": "transfer-agent", "to-flow-tab": "transfer-flow"};
for (const tab of Object.keys(TRANSFER_TABS)) {
  $(tab).onclick = () => {
    for (const [other, select] of Object.entries(TRANSFER_TABS)) {
      $(select).classList.toggle("hidden", other !== tab);
      $(other).setAttribute("aria-selected", String(other === tab));
    }
    // A survey or menu takes the caller from you: there is nobody to consult first.
    $("consult-go").disabled = tab === "to-flow-tab";
  };
}
function transferTarget() {
  if ($("to-flow-tab").getAttribute("aria-selected") === "true") return {flow: $("transfer-flow").value};
  if ($("to-agent-tab").getAttribute("aria-selected") === "true") return {agent_id: $("transfer-agent").value};
  return {queue: $("transfer-queue").value};
}
$("transfer-go").onclick = async () => {
  if (!desk.call) return;
  const target = transferTarget();
  if (!Object.values(target)[0]) return note("Choose where to transfer the call.");
  const ack = await act("Transfer", send("transfer", {contact_id: desk.call.contact_id, ...target, note: $("transfer-note").value || undefined}));
  if (ack) {
    toggle("transfer", false);
    note("Transferred.");
  }
};

// -- attended transfer: consult first, then complete or go back to the caller ----------------------------

function showConsult(state, text) {
  desk.consult = state;
  $("consult").classList.toggle("hidden", !state);
  $("consult-text").textContent = text || "";
  $("consult-complete").disabled = state !== "talking";
  const consulted = !!(desk.call && desk.call.consulted);
  for (const id of ["hold", "transfer-button", "hangup"]) $(id).disabled = !!state || (consulted && id !== "hangup");
}

$("consult-go").onclick = async () => {
  if (!desk.call) return;
  const toAgent = $("to-agent-tab").getAttribute("aria-selected") === "true";
  const target = toAgent ? {agent_id: $("transfer-agent").value} : {queue: $("transfer-queue").value};
  if (!Object.values(target)[0]) return note("Choose whom to consult.");
  const who = toAgent ? agentName(target.agent_id) : `someone in ${$("transfer-queue").selectedOptions[0].textContent}`;
  const ack = await act("Consult", send("consult", {contact_id: desk.call.contact_id, ...target, note: $("transfer-note").value || undefined}));
  if (!ack) return;
  desk.consultWith = toAgent ? target.agent_id : null;
  toggle("transfer", false);
  note("");
  showConsult("ringing", `Calling ${who}… ${callerName(desk.call.context)} hears music.`);
};
$("consult-complete").onclick = async () => {
  if (desk.call && (await act("Complete transfer", send("consult_complete", {contact_id: desk.call.contact_id})))) {
    showConsult("completing", "Handing the call over…");
  }
};
$("consult-cancel").onclick = async () => {
  if (desk.call && (await act("Back to the caller", send("consult_cancel", {contact_id: desk.call.contact_id})))) {
    showConsult("cancelling", "Going back to the caller…");
  }
};

const CONSULT_ENDED = {
  rejected: "declined", no_answer: "did not answer", cancelled: "was left", target_left: "left the consultation",
  caller_hung_up: "ended: the caller hung up", agent_on_phone: "is on a desk phone and cannot be consulted",
};

function onConsult(detail) {
  if (!desk.call || desk.call.contact_id !== detail.contact_id) return;
  if (detail.state === "talking") {
    desk.consultWith = detail.to_agent_id || desk.consultWith;
    showConsult("talking", `You are talking with ${agentName(desk.consultWith)}. ${callerName(desk.call.context)} hears music.`);
  } else if (detail.state === "cancelled") {
    const who = desk.consultWith ? agentName(desk.consultWith) : "The consultation";
    showConsult(null);
    $("hold").setAttribute("aria-pressed", "false");
    $("hold").textContent = "Hold";
    note(`${who} ${CONSULT_ENDED[detail.reason] || `ended (${detail.reason})`}. You are back with ${callerName(desk.call.context)}.`);
  } else if (detail.state === "completed") {
    // The consulted side: the caller is ours now.
    desk.call.consulted = false;
    for (const id of ["hold", "keypad-button", "transfer-button", "record", "hangup"]) $(id).disabled = false;
    note(`You now have ${callerName(desk.call.context)} on the line.`);
  }
}

// -- the socket: connect, reconnect with back-off --------------------------------------------------------

function bind(conn) {
  conn.addEventListener("message", (e) => desk.events.push(e.detail));
  conn.addEventListener("agent_state", (e) => {
    setState(e.detail.state, e.detail.reason);
    if (e.detail.state === "logged_out" && e.detail.reason === "disconnected") {
      note("You were signed out of calls: the platform lost your connection for longer than the grace period. Choose a state to take calls again.");
    }
  });
  conn.addEventListener("contact_offer", (e) => onOffer(e.detail));
  conn.addEventListener("contact_withdrawn", (e) => {
    endLeg(e.detail.contact_id);
    if (desk.offer && desk.offer.contact_id === e.detail.contact_id) {
      stopRinging();
      desk.offer = null;
      panel("idle");
      const why = {caller_hung_up: "The caller hung up before you answered.", no_answer: "The call was not answered in time."}[e.detail.reason];
      $("idle-text").textContent = why || "The call went elsewhere.";
    }
  });
  conn.addEventListener("contact_connected", (e) =>
    onConnected(e.detail.contact_id, e.detail.recording, e.detail.consult, e.detail.task));
  conn.addEventListener("consult", (e) => onConsult(e.detail));
  conn.addEventListener("monitor_notice", (e) => onMonitorNotice(e.detail));
  conn.addEventListener("contact_ended", (e) => onEnded(e.detail));
  conn.addEventListener("ended", (e) => {
    for (const [contactId, leg] of desk.legs) if (leg.legId === e.detail.leg_id) endLeg(contactId);
  });
  conn.addEventListener("error", (e) => {
    if (e.detail && e.detail.code === "session_ended") desk.endedBy = e.detail.reason;
  });
  conn.addEventListener("session", (e) => onSession(e.detail)); // late: routing answered after the wait
  conn.addEventListener("close", (e) => onClose(conn, e.detail));
}

// What routing still has for this agent after a (re)connect: resume it, and drop what went away meanwhile.
function onSession(info) {
  desk.resumed = info;
  const kept = new Set((info.contacts || []).map((c) => c.contact_id));
  for (const id of [...desk.legs.keys()]) if (!kept.has(id)) endLeg(id);
  if (desk.offer && !kept.has(desk.offer.contact_id)) {
    stopRinging();
    desk.offer = null;
    panel("idle");
  }
  if (desk.call && !kept.has(desk.call.contact_id)) {
    clearInterval(desk.call.timer);
    clearInterval(desk.call.quality);
    desk.call = null;
    panel("idle");
    $("idle-text").textContent = "You were away too long: the caller went back in line for another agent.";
  }
  if (info.logged_in && info.state) setState(info.state, info.reason);
}

async function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
  const conn = new AgentConnection(url);
  const ready = await conn.open(await session.fresh());
  desk.iceServers = ready.ice_servers || [];
  desk.conn = conn;
  bind(conn);
  // open() waited for `session`: the desk knows what it still has before it says it is back.
  desk.resumed = null;
  if (conn.session) onSession(conn.session);
  desk.reconnects = 0;
  banner(null);
  // Sign in to calls; when routing still has the agent (a reload, a reconnect within the grace), `session`
  // has told its state and `login` answers already_logged_in.
  const [state, reason] = desk.presence.split(":");
  const ack = await conn.request("login", {state, reason: reason || undefined}).catch((err) => err);
  if (!(ack instanceof Error)) setState(state, reason);
  else if (ack.code !== "already_logged_in") note(`Sign in to calls: ${ack.reason}`);
}

function onClose(conn, detail) {
  if (desk.conn !== conn) return;
  desk.conn = null;
  if (!desk.owner) return;
  if (detail.code === 4401) {
    // The session ended (signed out elsewhere, forced out, the shift is over): sign in again.
    for (const id of [...desk.legs.keys()]) endLeg(id);
    stopRinging();
    session.signOut();
    const why = (desk.endedBy || "").replace(/^the session has ended: /, "");
    showSignIn(`Your session ended${why ? `: ${why}` : ""}. Sign in again to continue.`);
    return;
  }
  reconnect();
}

// The browser says the network is gone (Wi-Fi off, cable out): the socket cannot carry anything, so it is
// closed now rather than when the server's pings give up, and no attempt is made until the browser says
// the network is back; then at once. The call's audio is a separate path and goes on if it can.
function offlineBanner() {
  banner(`You are offline. The desk reconnects as soon as the network is back.${callAudio()}`, {bad: true});
}

window.addEventListener("offline", () => {
  if (!desk.owner) return;
  clearTimeout(desk.retry);
  const conn = desk.conn;
  desk.conn = null; // its close is then not taken for a drop to retry at once (onClose)
  if (conn) conn.close();
  offlineBanner();
});

window.addEventListener("online", () => {
  if (!desk.owner || desk.conn) return;
  clearTimeout(desk.retry);
  tryConnect();
});

async function reconnect() {
  if (navigator.onLine === false) return offlineBanner(); // the "online" event reconnects
  desk.reconnects += 1;
  const step = RECONNECT_DELAYS_MS[Math.min(desk.reconnects - 1, RECONNECT_DELAYS_MS.length - 1)];
  const delay = step * (0.8 + Math.random() * 0.4);
  const audio = callAudio();
  banner(`Connection lost. Reconnecting${delay >= 1000 ? ` in ${Math.ceil(delay / 1000)} s` : ""}…${audio}`, {action: "Retry now", onAction: () => {
    clearTimeout(desk.retry);
    tryConnect();
  }});
  clearTimeout(desk.retry);
  desk.retry = setTimeout(tryConnect, delay);
}

async function tryConnect() {
  if (desk.connecting) return; // one attempt at a time ("online" may come during a retry)
  desk.connecting = true;
  banner(`Reconnecting…${callAudio()}`);
  try {
    await connect();
  } catch (err) {
    if (err.code === "token_invalid" || err.status === 401) {
      showSignIn("Your session has ended. Sign in again.");
      return;
    }
    reconnect();
  } finally {
    desk.connecting = false;
  }
}

// -- one tab owns the desk -------------------------------------------------------------------------------

function claimTab(steal) {
  if (!navigator.locks) return Promise.resolve(true);
  return new Promise((resolve) => {
    navigator.locks.request(DESK_LOCK, steal ? {steal: true} : {ifAvailable: true}, (lock) => {
      if (!lock) return resolve(false);
      resolve(true);
      return new Promise(() => {}); // held while this tab lives
    }).catch(() => tabLost());
  });
}

function tabLost() {
  desk.owner = false;
  const conn = desk.conn;
  desk.conn = null;
  if (conn) conn.close();
  for (const id of [...desk.legs.keys()]) endLeg(id);
  stopRinging();
  otherTab("Your desk moved to another tab. Calls ring there.");
}

function otherTab(text) {
  banner(text, {action: "Use this tab instead", onAction: async () => {
    if (await claimTab(true)) start();
  }});
}

// -- sign-in and start -----------------------------------------------------------------------------------

function showSignIn(message) {
  view("signin");
  banner(null);
  $("signin-error").textContent = message || "";
  $("email").focus();
}

$("signin-form").onsubmit = async (e) => {
  e.preventDefault();
  askNotifications();
  $("signin-button").disabled = true;
  $("signin-error").textContent = "";
  try {
    await session.signIn($("email").value.trim(), $("password").value);
    $("password").value = "";
    await enterDesk();
  } catch (err) {
    $("signin-error").textContent = err.message;
  } finally {
    $("signin-button").disabled = false;
  }
};

$("invite-form").onsubmit = async (e) => {
  e.preventDefault();
  if ($("new-password").value !== $("new-password-2").value) {
    $("invite-error").textContent = "The two passwords differ.";
    return;
  }
  $("invite-button").disabled = true;
  try {
    await session.acceptInvite(desk.invite, $("new-password").value);
    desk.invite = null;
    await enterDesk();
  } catch (err) {
    $("invite-error").textContent = err.message;
  } finally {
    $("invite-button").disabled = false;
  }
};

$("signout").onclick = async () => {
  if (desk.call) return note("Hang up before signing out.");
  await act("Stop taking calls", send("logout"));
  const conn = desk.conn;
  desk.conn = null;
  if (conn) conn.close();
  await session.signOut();
  showSignIn("You signed out.");
};

session.addEventListener("ended", (e) => {
  if (desk.call) return banner(`Your session ended (${e.detail}). Finish the call, then sign in again.`, {bad: true});
  const conn = desk.conn;
  desk.conn = null;
  if (conn) conn.close();
  showSignIn(`Your session ended: ${e.detail}`);
});

async function enterDesk() {
  const role = session.access.role;
  if (role && role !== "agent") {
    // Supervisors and admins sign in here too (the same session); their console is another page.
    view("signin");
    $("signin-error").textContent = `${session.access.email} is ${role === "admin" ? "an" : "a"} ${role}: you are signed in, but this desk is for agents.`;
    return;
  }
  desk.me = await api("/v1/desk");
  $("agent-name").textContent = desk.me.agent.name;
  $("tenant-name").textContent = desk.me.tenant.name;
  document.title = `${desk.me.agent.name} · Agent desktop`;
  renderPresence();
  const dispositions = $("disposition");
  dispositions.replaceChildren();
  option(dispositions, "", "Choose an outcome…");
  for (const d of desk.me.settings.dispositions) option(dispositions, d.code, d.label);
  desk.colleagues = (await api("/v1/desk/agents").catch(() => ({items: []}))).items;
  view("desk");
  panel("idle");
  if (["available", "away", "wrap_up", "on_contact", "reserved"].includes(desk.me.state)) {
    // A reload: routing still has this agent signed in to calls; carry on in that state.
    desk.presence = desk.me.state === "available" ? "available" : "away:";
    setState(desk.me.state);
  }
  $("devices").classList.remove("hidden");
  startMeter();
  try {
    await connect();
  } catch (err) {
    if (err.code === "token_invalid") return showSignIn(err.reason);
    reconnect();
  }
}

async function start() {
  desk.owner = true;
  banner(null);
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token") || new URLSearchParams(location.search).get("token");
  const invite = params.get("invite");
  if (token || invite) history.replaceState(null, "", location.pathname); // out of the address bar
  if (invite) desk.invite = invite;
  if (desk.invite) {
    view("invite");
    try {
      const who = await session.lookupInvite(desk.invite);
      $("invite-who").textContent = `For ${who.email} at ${who.tenant_name}.`;
      $("new-password").focus();
    } catch (err) {
      $("invite-error").textContent = err.message;
      $("invite-button").disabled = true;
    }
    return;
  }
  try {
    if (token) session.useToken(token);
    else if (!(await session.resume())) return showSignIn();
    await enterDesk();
  } catch (err) {
    showSignIn(err.message);
  }
}

// Once every script of the page (devices.js too) has run.
document.addEventListener("DOMContentLoaded", async () => {
  view(null);
  if (await claimTab(false)) start();
  else otherTab("Your desk is open in another tab. Calls ring there, not here.");
});
