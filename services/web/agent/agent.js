// The agent desktop: the reference client of docs/agent-protocol.md (websocket /v1/ws, version 1).
// Plain JS, no build step. AgentConnection speaks the protocol (auth, ref/ack correlation); Leg is one
// contact's WebRTC audio, made while the contact rings; the rest binds both to the page.
"use strict";

const PROTOCOL_VERSION = 1;
const REQUEST_TIMEOUT_MS = 10000;
const ICE_GATHER_MS = 2000;

class ProtocolError extends Error {
  constructor(code, reason) {
    super(`${code}: ${reason}`);
    this.code = code;
    this.reason = reason;
  }
}

// One authenticated socket. Server pushes are dispatched as DOM events named by their type.
class AgentConnection extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.ready = null;
    this.pending = new Map(); // ref -> {type, resolve, reject, timer}
    this.nextRef = 1;
  }

  open(token) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      // The token goes in the first message rather than the URL, which servers and proxies log.
      ws.onopen = () => ws.send(JSON.stringify({v: PROTOCOL_VERSION, type: "auth", token}));
      ws.onmessage = (e) => {
        const msg = JSON.parse(e.data);
        if (!this.ready) {
          if (msg.type === "ready") {
            this.ready = msg;
            resolve(msg);
          } else {
            reject(new ProtocolError(msg.code || "unexpected", msg.reason || e.data));
          }
          return;
        }
        this.receive(msg);
      };
      ws.onclose = (e) => {
        for (const p of this.pending.values()) p.reject(new ProtocolError("closed", "the connection closed"));
        this.pending.clear();
        if (!this.ready) reject(new ProtocolError("closed", e.reason || "the connection closed"));
        this.dispatchEvent(new CustomEvent("close", {detail: {code: e.code, reason: e.reason}}));
      };
    });
  }

  receive(msg) {
    const waiting = msg.ref !== undefined && this.pending.get(msg.ref);
    if (waiting && (msg.type === "ack" || msg.type === "error" || msg.type === "answer")) {
      this.pending.delete(msg.ref);
      clearTimeout(waiting.timer);
      if (msg.type === "error") waiting.reject(new ProtocolError(msg.code, msg.reason));
      else waiting.resolve(msg);
      return;
    }
    if (msg.type === "answer") {
      // A server that answers an offer without its ref: offers are answered in order.
      for (const [ref, p] of this.pending) {
        if (p.type === "offer") {
          this.pending.delete(ref);
          clearTimeout(p.timer);
          p.resolve(msg);
          return;
        }
      }
    }
    this.dispatchEvent(new CustomEvent(msg.type, {detail: msg}));
    this.dispatchEvent(new CustomEvent("message", {detail: msg}));
  }

  // Send a command; resolves with its ack (or answer), rejects with a ProtocolError.
  request(type, fields = {}) {
    const ref = `w${this.nextRef++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new ProtocolError("timeout", `no answer to ${type}`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(ref, {type, resolve, reject, timer});
      this.ws.send(JSON.stringify({v: PROTOCOL_VERSION, type, ref, ...fields}));
    });
  }

  close() {
    if (this.ws) this.ws.close();
  }
}

// One contact's audio: an RTCPeerConnection offered with call_id = the contact while it rings, so that
// accepting only bridges audio that is already flowing.
class Leg {
  constructor(conn, contactId, audioElement) {
    this.conn = conn;
    this.contactId = contactId;
    this.audio = audioElement;
    this.legId = null;
    this.pc = null;
    this.mic = null;
    this.lateCandidates = [];
  }

  async microphone() {
    try {
      return await navigator.mediaDevices.getUserMedia({audio: true});
    } catch (err) {
      // No microphone (or refused): send silence so the caller still hears the agent's side open.
      log(`microphone unavailable (${err.name}): sending silence`);
      const ctx = new AudioContext();
      return ctx.createMediaStreamDestination().stream;
    }
  }

  async start() {
    const iceServers = (this.conn.ready.ice_servers || []).map((s) => ({
      urls: s.urls, username: s.username, credential: s.credential,
    }));
    this.pc = new RTCPeerConnection({iceServers});
    this.mic = await this.microphone();
    for (const track of this.mic.getAudioTracks()) this.pc.addTrack(track, this.mic);
    this.pc.ontrack = (e) => {
      this.audio.srcObject = e.streams[0] || new MediaStream([e.track]);
      this.audio.play().catch(() => log("press any button to hear the caller (autoplay is blocked)"));
    };
    this.pc.onicecandidate = (e) => {
      if (!e.candidate) return;
      if (this.legId) this.sendCandidate(e.candidate);
      else this.lateCandidates.push(e.candidate);
    };
    await this.pc.setLocalDescription(await this.pc.createOffer());
    // Wait briefly for candidates so the offer carries them; any later ones trickle as `ice`.
    await new Promise((resolve) => {
      if (this.pc.iceGatheringState === "complete") return resolve();
      this.pc.onicegatheringstatechange = () => this.pc.iceGatheringState === "complete" && resolve();
      setTimeout(resolve, ICE_GATHER_MS);
    });
    this.lateCandidates = [];
    const answer = await this.conn.request("offer", {sdp: this.pc.localDescription.sdp, call_id: this.contactId});
    this.legId = answer.leg_id;
    await this.pc.setRemoteDescription({type: "answer", sdp: answer.sdp});
    for (const c of this.lateCandidates.splice(0)) this.sendCandidate(c);
  }

  sendCandidate(c) {
    this.conn.request("ice", {
      leg_id: this.legId, candidate: c.candidate, sdp_mid: c.sdpMid, sdp_mline_index: c.sdpMLineIndex,
    }).catch((err) => log(`ice: ${err.message}`));
  }

  close() {
    if (this.pc) this.pc.close();
    if (this.mic) for (const t of this.mic.getTracks()) t.stop();
    if (this.audio.srcObject) this.audio.srcObject = null;
  }
}

// The page -----------------------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const desk = {conn: null, state: "offline", offer: null, call: null, wrapUp: null, legs: new Map(), events: []};
window.agentDesktop = desk; // for the browser tests and the curious

function log(text) {
  const line = `${new Date().toLocaleTimeString()} ${text}\n`;
  $("log").textContent = line + $("log").textContent;
}

function show(panel) {
  for (const id of ["offer", "call", "wrapup"]) $(id).classList.toggle("hidden", id !== panel);
  $("idle").classList.toggle("hidden", Boolean(panel));
}

function setState(state, reason) {
  desk.state = state;
  $("state").textContent = reason ? `${state} (${reason})` : state;
  $("state").className = state;
  const signedIn = state !== "offline";
  $("login").disabled = !desk.conn || signedIn;
  $("available").disabled = !signedIn || state === "available";
  $("away").disabled = !signedIn || state === "away";
  $("logout").disabled = !signedIn;
}

function renderContext(dl, ctx) {
  dl.replaceChildren();
  const row = (label, value) => {
    if (value === undefined || value === null || value === "") return;
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = label;
    dd.textContent = value; // textContent: nothing a caller controls is ever parsed as HTML
    dl.append(dt, dd);
  };
  const caller = ctx.caller || {};
  row("Caller", [caller.number, caller.name && `(${caller.name})`].filter(Boolean).join(" ") || "unknown");
  row("Dialled", ctx.dialled);
  row("Queue", ctx.queue && ctx.queue.name);
  if (ctx.waited) row("Waited", `${(ctx.waited.ivr_s || 0).toFixed(1)} s in IVR, ${(ctx.waited.queue_s || 0).toFixed(1)} s in queue`);
  if (ctx.ivr) {
    row("IVR", `${ctx.ivr.flow || ""} ${(ctx.ivr.path || []).join(" > ")}`);
    row("Digits", ctx.ivr.digits);
  }
  for (const [k, v] of Object.entries(ctx.attributes || {})) row(k, String(v));
  if (ctx.history) {
    row("Today", `${ctx.history.today || 0} contact(s)`);
    for (const c of ctx.history.last || []) row("Earlier", `${c.at} ${c.queue}: ${c.outcome}${c.disposition ? ` (${c.disposition})` : ""}`);
  }
  if (ctx.transfer) row("Transfer note", ctx.transfer.note || "(none)");
}

async function act(what, promise) {
  try {
    return await promise;
  } catch (err) {
    log(`${what} failed: ${err.message}`);
    return null;
  }
}

function endLeg(contactId) {
  const leg = desk.legs.get(contactId);
  if (leg) {
    leg.close();
    desk.legs.delete(contactId);
  }
}

function bind(conn) {
  conn.addEventListener("message", (e) => {
    desk.events.push(e.detail);
    log(`${e.detail.type} ${JSON.stringify(e.detail).slice(0, 160)}`);
  });
  conn.addEventListener("agent_state", (e) => setState(e.detail.state, e.detail.reason));
  conn.addEventListener("contact_offer", async (e) => {
    const offer = e.detail;
    desk.offer = offer;
    renderContext($("context"), offer.context || {});
    show("offer");
    const leg = new Leg(conn, offer.contact_id, $("remote"));
    desk.legs.set(offer.contact_id, leg);
    await act("audio", leg.start());
  });
  conn.addEventListener("contact_withdrawn", (e) => {
    endLeg(e.detail.contact_id);
    if (desk.offer && desk.offer.contact_id === e.detail.contact_id) {
      desk.offer = null;
      show(null);
    }
  });
  conn.addEventListener("contact_connected", (e) => {
    desk.call = {contact_id: e.detail.contact_id, context: desk.offer ? desk.offer.context : {}};
    desk.offer = null;
    renderContext($("call-context"), desk.call.context || {});
    $("hold").setAttribute("aria-pressed", "false");
    $("mute").setAttribute("aria-pressed", "false");
    show("call");
  });
  conn.addEventListener("contact_ended", (e) => {
    endLeg(e.detail.contact_id);
    desk.call = null;
    desk.wrapUp = e.detail.contact_id;
    show("wrapup");
  });
  conn.addEventListener("ended", (e) => {
    for (const [contactId, leg] of desk.legs) if (leg.legId === e.detail.leg_id) endLeg(contactId);
  });
  conn.addEventListener("close", (e) => {
    log(`disconnected (${e.detail.code} ${e.detail.reason || ""})`);
    for (const contactId of [...desk.legs.keys()]) endLeg(contactId);
    desk.conn = null;
    $("connect").disabled = false;
    setState("offline");
  });
}

async function connect(token) {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
  const conn = new AgentConnection(url);
  $("connect").disabled = true;
  try {
    const ready = await conn.open(token);
    desk.conn = conn;
    bind(conn);
    $("who").textContent = `Agent ${ready.agent_id}; token valid until ${new Date(ready.expires_at * 1000).toLocaleTimeString()}.`;
    log("connected");
    setState("offline");
  } catch (err) {
    log(`connect failed: ${err.message}`);
    $("connect").disabled = false;
  }
}

$("connect").onclick = () => connect($("token").value.trim());
$("login").onclick = async () => {
  const ack = await act("sign in", desk.conn.request("login", {state: "available"}));
  if (ack) setState(ack.state || "available");
};
$("available").onclick = async () => {
  const ack = await act("available", desk.conn.request("state", {state: "available"}));
  if (ack) setState(ack.state || "available");
};
$("away").onclick = async () => {
  const ack = await act("away", desk.conn.request("state", {state: "away"}));
  if (ack) setState(ack.state || "away");
};
$("logout").onclick = async () => {
  if (await act("sign out", desk.conn.request("logout"))) setState("offline");
};
$("accept").onclick = () => {
  const o = desk.offer;
  if (o) act("accept", desk.conn.request("accept", {contact_id: o.contact_id, offer_id: o.offer_id}));
};
$("reject").onclick = async () => {
  const o = desk.offer;
  if (!o) return;
  await act("reject", desk.conn.request("reject", {contact_id: o.contact_id, offer_id: o.offer_id}));
  endLeg(o.contact_id);
  desk.offer = null;
  show(null);
};
for (const [id, type] of [["hold", "hold"], ["mute", "mute"]]) {
  $(id).onclick = async () => {
    const on = $(id).getAttribute("aria-pressed") !== "true";
    if (desk.call && await act(type, desk.conn.request(type, {contact_id: desk.call.contact_id, on}))) {
      $(id).setAttribute("aria-pressed", String(on));
    }
  };
}
$("hangup").onclick = () => desk.call && act("hang up", desk.conn.request("hangup", {contact_id: desk.call.contact_id}));
$("send-digits").onclick = () => desk.call && act("digits", desk.conn.request("dtmf", {contact_id: desk.call.contact_id, digits: $("digits").value}));
$("transfer").onclick = () => desk.call && act("transfer", desk.conn.request("transfer", {
  contact_id: desk.call.contact_id, queue: $("transfer-queue").value, note: $("transfer-note").value || undefined,
}));
$("wrap").onclick = async () => {
  if (!desk.wrapUp) return;
  const fields = {contact_id: desk.wrapUp, disposition: $("disposition").value, notes: $("notes").value || undefined};
  if (await act("wrap-up", desk.conn.request("wrap_up", fields))) {
    desk.wrapUp = null;
    $("notes").value = "";
    show(null);
  }
};

// A token in the URL (?token= or #token=) connects at once, then leaves the address bar.
const fromUrl = new URLSearchParams(location.search).get("token") || new URLSearchParams(location.hash.slice(1)).get("token");
show(null);
setState("offline");
if (fromUrl) {
  history.replaceState(null, "", location.pathname);
  $("token").value = fromUrl;
  connect(fromUrl);
}
