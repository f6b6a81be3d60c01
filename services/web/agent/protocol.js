// The agent protocol (docs/agent-protocol.md, websocket /v1/ws, version 1): AgentConnection is one
// authenticated socket (ref/ack correlation, pushes as DOM events); Leg is one contact's WebRTC audio, made
// while the contact rings so that answering only bridges audio that already flows. The leg does not depend
// on the socket: it keeps playing while the desk reconnects. When the leg's network path is lost for a
// few seconds (Wi-Fi dropped, the laptop moved to another network) it restarts ICE on the same leg.
"use strict";

const PROTOCOL_VERSION = 1;
const REQUEST_TIMEOUT_MS = 10000;
const SESSION_WAIT_MS = 10000; // routing's answer after `ready` (see open)
const ICE_GATHER_MS = 2000;
// A leg 'disconnected' this long restarts ICE ('failed': at once); not connected again within
// RESTART_RETRY_MS after a restart (or the socket was down too), it tries again. The media server keeps
// the leg for its ICE consent time (about 30 s, docs/media.md) while nothing answers.
const RESTART_AFTER_MS = 2500;
const RESTART_RETRY_MS = 3000;

class ProtocolError extends Error {
  constructor(code, reason) {
    super(reason || code);
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

  // Resolves with `ready` once the server has also said what routing still has for the agent (`session`,
  // kept as this.session): until then the socket is not up, since the desk cannot know whether its call
  // resumed. Pushes that come in between are held and dispatched just after, once listeners are bound.
  // Routing may not answer (the server then sends no `session`): after SESSION_WAIT_MS the socket is up
  // without it, and a late `session` is dispatched like any push.
  open(token) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      this.session = null;
      const early = [];
      let up = false;
      const goUp = () => {
        if (up) return;
        up = true;
        clearTimeout(this.sessionTimer);
        resolve(this.ready);
        setTimeout(() => early.splice(0).forEach((m) => this.receive(m)), 0);
      };
      // The token goes in the first message rather than the URL, which servers and proxies log.
      ws.onopen = () => ws.send(JSON.stringify({v: PROTOCOL_VERSION, type: "auth", token}));
      ws.onmessage = (e) => {
        const msg = JSON.parse(e.data);
        if (!this.ready) {
          if (msg.type === "ready") {
            this.ready = msg;
            this.sessionTimer = setTimeout(goUp, SESSION_WAIT_MS);
          } else {
            reject(new ProtocolError(msg.code || "unexpected", msg.reason || e.data));
          }
          return;
        }
        if (!up) {
          if (msg.type === "session") {
            this.session = msg;
            goUp();
          } else {
            early.push(msg);
          }
          return;
        }
        this.receive(msg);
      };
      ws.onclose = (e) => {
        for (const p of this.pending.values()) p.reject(new ProtocolError("closed", "the connection closed"));
        this.pending.clear();
        clearTimeout(this.sessionTimer);
        if (!up) reject(new ProtocolError("closed", e.reason || "the connection closed"));
        this.dispatchEvent(new CustomEvent("close", {detail: {code: e.code, reason: e.reason}}));
      };
    });
  }

  receive(msg) {
    const waiting = msg.ref !== undefined && this.pending.get(msg.ref);
    if (waiting && ["ack", "error", "answer", "pong"].includes(msg.type)) {
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

// One contact's audio: an RTCPeerConnection offered with call_id = the contact while it rings (or the call
// the offer names; null: a callback whose customer is dialled after the accept, so the leg names the
// contact instead). `send` is the desk's current socket (it may change while the leg lives: a reconnect
// does not touch the audio).
class Leg {
  constructor({send, contactId, callId, iceServers, audio, micId, onNote, onAudio}) {
    this.send = send;
    this.contactId = contactId;
    this.callId = callId === undefined ? contactId : callId;
    this.iceServers = iceServers || [];
    this.audio = audio;
    this.micId = micId;
    this.note = onNote || (() => {});
    // "reconnecting" when the audio path is lost, "connected" when it is back (after a restart or not).
    this.onAudio = onAudio || (() => {});
    this.reconnecting = false;
    this.restarting = false;
    this.restarts = 0;
    this.restartTimer = null;
    this.legId = null;
    this.pc = null;
    this.mic = null;
    this.lateCandidates = [];
  }

  async microphone() {
    try {
      const audio = this.micId ? {deviceId: {exact: this.micId}} : true;
      return await navigator.mediaDevices.getUserMedia({audio});
    } catch (err) {
      // No microphone (or refused): send silence so the caller still hears the agent's side open.
      this.note(`No microphone (${err.name}): the caller hears silence from you.`);
      const ctx = new AudioContext();
      return ctx.createMediaStreamDestination().stream;
    }
  }

  async start() {
    const iceServers = this.iceServers.map((s) => ({urls: s.urls, username: s.username, credential: s.credential}));
    this.pc = new RTCPeerConnection({iceServers});
    this.mic = await this.microphone();
    for (const track of this.mic.getAudioTracks()) this.pc.addTrack(track, this.mic);
    this.pc.ontrack = (e) => {
      this.audio.srcObject = e.streams[0] || new MediaStream([e.track]);
      this.audio.play().catch(() => this.note("Click anywhere to hear the caller (the browser blocked sound)."));
    };
    this.pc.onicecandidate = (e) => {
      if (!e.candidate) return;
      if (this.legId && !this.restarting) this.sendCandidate(e.candidate);
      else this.lateCandidates.push(e.candidate);
    };
    this.pc.onconnectionstatechange = () => this.watch();
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await this.gathered();
    const where = this.callId ? {call_id: this.callId} : {contact_id: this.contactId};
    const answer = await this.send("offer", {sdp: this.pc.localDescription.sdp, ...where});
    this.legId = answer.leg_id;
    await this.pc.setRemoteDescription({type: "answer", sdp: answer.sdp});
    for (const c of this.lateCandidates.splice(0)) this.sendCandidate(c);
  }

  // Wait briefly for candidates so the offer carries them; any later ones trickle as `ice`.
  async gathered() {
    await new Promise((resolve) => {
      if (this.pc.iceGatheringState === "complete") return resolve();
      this.pc.onicegatheringstatechange = () => this.pc.iceGatheringState === "complete" && resolve();
      setTimeout(resolve, ICE_GATHER_MS);
    });
    this.lateCandidates = [];
  }

  watch() {
    const state = this.pc.connectionState;
    if (state === "connected") {
      clearTimeout(this.restartTimer);
      this.restartTimer = null;
      if (this.reconnecting) {
        this.reconnecting = false;
        this.onAudio("connected");
      }
    } else if ((state === "disconnected" || state === "failed") && this.legId && !this.restartTimer) {
      if (!this.reconnecting) {
        this.reconnecting = true;
        this.onAudio("reconnecting");
      }
      this.restartTimer = setTimeout(() => this.restart(), state === "failed" ? 0 : RESTART_AFTER_MS);
    }
  }

  // ICE restart (RFC 8445 9): new credentials on the same leg; the server answers with its own and the
  // call's audio (the same DTLS-SRTP session) continues over whatever path now works.
  // `force`: restart a connected leg too (tests; a client that knows its network changed).
  async restart(force = false) {
    this.restartTimer = null;
    if (!this.pc || this.pc.connectionState === "closed" || this.restarting) return;
    if (this.pc.connectionState === "connected" && !force) return;
    this.restarting = true;
    try {
      this.pc.restartIce();
      await this.pc.setLocalDescription(await this.pc.createOffer({iceRestart: true}));
      await this.gathered();
      const answer = await this.send("offer", {leg_id: this.legId, sdp: this.pc.localDescription.sdp});
      await this.pc.setRemoteDescription({type: "answer", sdp: answer.sdp});
      this.restarts += 1;
    } catch (err) {
      // Most often the desk's socket is down too (the same network): the next try goes when it is back.
      // The rolled-back offer's candidates mean nothing to the server.
      this.lateCandidates = [];
      if (this.pc.signalingState === "have-local-offer") await this.pc.setLocalDescription({type: "rollback"}).catch(() => {});
      if (err && ["unknown_leg", "forbidden", "webrtc"].includes(err.code)) {
        this.note(`The call's audio could not be restored (${err.reason || err.code}).`);
        return;
      }
    } finally {
      this.restarting = false;
    }
    for (const c of this.lateCandidates.splice(0)) this.sendCandidate(c);
    if (this.pc.connectionState !== "connected" && this.pc.connectionState !== "closed") {
      this.restartTimer = setTimeout(() => this.restart(), RESTART_RETRY_MS);
    }
  }

  sendCandidate(c) {
    this.send("ice", {leg_id: this.legId, candidate: c.candidate, sdp_mid: c.sdpMid, sdp_mline_index: c.sdpMLineIndex})
      .catch(() => {});
  }

  get connected() { return Boolean(this.pc && this.pc.connectionState === "connected"); }

  // Good / fair / poor from what the browser measures: loss, jitter and round trip of the audio.
  async quality() {
    if (!this.pc) return null;
    let lost = 0, received = 0, jitter = 0, rtt = 0;
    for (const s of (await this.pc.getStats()).values()) {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        lost = s.packetsLost || 0; received = s.packetsReceived || 0; jitter = s.jitter || 0;
      }
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) rtt = s.currentRoundTripTime;
    }
    const loss = received + lost ? lost / (received + lost) : 0;
    const level = loss > 0.05 || jitter > 0.06 || rtt > 0.5 ? "poor" : loss > 0.01 || jitter > 0.03 || rtt > 0.25 ? "fair" : "good";
    return {level, loss, jitter, rtt, received};
  }

  close() {
    clearTimeout(this.restartTimer);
    if (this.pc) this.pc.close();
    if (this.mic) for (const t of this.mic.getTracks()) t.stop();
    if (this.audio.srcObject) this.audio.srcObject = null;
  }
}

window.AgentConnection = AgentConnection;
window.Leg = Leg;
window.ProtocolError = ProtocolError;
