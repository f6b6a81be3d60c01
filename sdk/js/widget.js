// The click-to-call widget: a "Call us" button for a tenant's web page that calls one of its queues over
// WebRTC (docs/agent-protocol.md, "Web callers" and "The widget on your page"). Plain JS, no build step,
// no dependencies:
//
//   <div id="call-us"></div>
//   <script src="https://API/widget/widget.js"></script>
//   <script>
//     Switchboard.widget({api: "https://API", key: "pk_...", queue: "Support", target: "#call-us"});
//   </script>
//
// A call: a widget token for the public key (POST /v1/widget/token), the websocket /v1/ws, the microphone,
// an RTCPeerConnection offered with `call`, the agent's audio in an <audio> element; a keypad (digits over a
// data channel) once connected, for menus; the place in line and expected wait while waiting. Failures are
// shown in the widget, never thrown at the page.
(function (global) {
  "use strict";

  const PROTOCOL_VERSION = 1;
  const TIMEOUT_MS = 15000;
  const ICE_GATHER_MS = 2000;
  const LABELS = {
    idle: "Call us",
    calling: "Calling…",
    connected: "Connected",
    talking: "Connected to an agent",
    ended: "Call ended",
    failed: "Call us",
  };
  const CSS = `
.sb-widget { font: 15px/1.4 system-ui, sans-serif; display: inline-flex; flex-direction: column; gap: .4em; }
.sb-widget .sb-row { display: flex; gap: .4em; align-items: center; }
.sb-widget button { font: inherit; padding: .5em 1.1em; border-radius: 99px; border: 0; cursor: pointer;
  color: #fff; background: #1f7a3a; }
.sb-widget button:disabled { opacity: .7; cursor: default; }
.sb-widget .sb-hangup { background: #b3261e; }
.sb-widget .sb-message { margin: 0; font-size: .85em; color: #b3261e; }
.sb-widget .sb-keys-toggle { background: #39424e; }
.sb-widget .sb-keypad { display: grid; grid-template-columns: repeat(3, 3em); gap: .35em; }
.sb-widget .sb-keypad button { background: #eef0f3; color: #16202f; border-radius: 10px; padding: .45em 0; font-size: 1.1em; }
.sb-widget .sb-keypad button:active { background: #d5dae2; }
.sb-widget [hidden] { display: none; }`;

  // An error meant for the person on the page: its message is shown as it is.
  class CallError extends Error {}

  function addStyle() {
    if (document.getElementById("sb-widget-style")) return;
    const style = document.createElement("style");
    style.id = "sb-widget-style";
    style.textContent = CSS;
    document.head.appendChild(style);
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  function within(promise, ms, what) {
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new CallError(`No answer from the call service (${what}).`)), ms);
    });
    return Promise.race([promise, late]).finally(() => clearTimeout(timer));
  }

  class Widget {
    constructor(options) {
      const o = options || {};
      this.api = String(o.api || "").replace(/\/+$/, "");
      this.key = o.key;
      this.queue = o.queue;
      this.root = typeof o.target === "string" ? document.querySelector(o.target) : o.target;
      if (!this.root) throw new Error(`Switchboard.widget: no element for target ${o.target}`);
      this.labels = Object.assign({}, LABELS, o.labels || {});
      this.state = "idle";
      this.states = []; // every state the widget went through, oldest first (for tests and the curious)
      this.ws = null;
      this.pc = null;
      this.mic = null;
      this.legId = null;
      this.channel = null; // the "dtmf" data channel: the keypad's digits, {"type": "dtmf", "digit": "5"}
      this.pressed = ""; // digits sent this call (for tests and the curious)
      this.position = null; // the last {position, expected_wait_s} while waiting
      this.waiting = new Map(); // ref -> {resolve, reject}
      this.nextRef = 1;
      this.attempts = 0;
      this.render();
      if (!this.api || !this.key || !this.queue) {
        this.show("failed", "This call button is not set up: it needs api, key and queue.");
        this.button.disabled = true;
      }
    }

    render() {
      addStyle();
      const box = element("div", "sb-widget");
      const row = element("div", "sb-row");
      this.button = element("button", "sb-call", this.labels.idle);
      this.button.type = "button";
      this.button.onclick = () => this.call();
      this.hangupButton = element("button", "sb-hangup", "Hang up");
      this.hangupButton.type = "button";
      this.hangupButton.hidden = true;
      this.hangupButton.onclick = () => this.hangup();
      this.keysButton = element("button", "sb-keys-toggle", "Keypad");
      this.keysButton.type = "button";
      this.keysButton.hidden = true;
      this.keysButton.setAttribute("aria-expanded", "false");
      this.keysButton.onclick = () => this.toggleKeypad();
      this.keypad = element("div", "sb-keypad");
      this.keypad.hidden = true;
      this.keypad.setAttribute("aria-label", "Keypad");
      for (const digit of ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"]) {
        const key = element("button", "", digit);
        key.type = "button";
        key.onclick = () => this.press(digit);
        this.keypad.append(key);
      }
      this.message = element("p", "sb-message");
      this.message.setAttribute("role", "status");
      this.audio = element("audio");
      this.audio.autoplay = true;
      row.append(this.button, this.keysButton, this.hangupButton);
      box.append(row, this.keypad, this.message, this.audio);
      this.root.replaceChildren(box);
    }

    // The button shows the state (or the caller's place in line); the line below shows problems.
    show(state, message, label) {
      this.state = state;
      this.states.push(state);
      const busy = state === "calling" || state === "connected";
      this.button.textContent = label || this.labels[state];
      this.button.disabled = busy;
      this.button.setAttribute("aria-busy", String(state === "calling"));
      this.hangupButton.hidden = !busy;
      this.keysButton.hidden = state !== "connected";
      if (state !== "connected") this.toggleKeypad(false);
      this.message.textContent = message || "";
    }

    async call() {
      if (this.state === "calling" || this.state === "connected") return;
      this.show("calling");
      const attempt = ++this.attempts;
      // Hung up while a step was under way: drop what it made and stop.
      const dropped = () => attempt !== this.attempts;
      try {
        const mic = await this.microphone();
        if (dropped()) return mic.getTracks().forEach((t) => t.stop());
        this.mic = mic;
        const token = await this.token();
        if (dropped()) return;
        const ready = await this.connect(token);
        if (dropped()) return;
        await this.offer(ready.ice_servers || []);
      } catch (err) {
        if (dropped()) return;
        const text = err instanceof CallError ? err.message : "The call could not be made.";
        if (!(err instanceof CallError)) console.warn("Switchboard widget:", err);
        this.finish("failed", text);
      }
    }

    async microphone() {
      if (!navigator.mediaDevices || !global.RTCPeerConnection) {
        throw new CallError("This browser cannot make calls (it needs a secure https page).");
      }
      try {
        return await navigator.mediaDevices.getUserMedia({audio: true});
      } catch (err) {
        throw new CallError(
          err.name === "NotAllowedError"
            ? "Allow the microphone to call."
            : "No microphone is available for the call."
        );
      }
    }

    async token() {
      let response;
      try {
        response = await within(
          fetch(`${this.api}/v1/widget/token`, {
            method: "POST",
            headers: {"Content-Type": "application/json"},
            body: JSON.stringify({key: this.key, queue: this.queue}),
          }),
          TIMEOUT_MS,
          "token"
        );
      } catch (err) {
        if (err instanceof CallError) throw err;
        throw new CallError("The call service cannot be reached.");
      }
      const body = await response.json().catch(() => ({}));
      if (response.status === 429) {
        throw new CallError("Too many calls from here just now: try again in a minute.");
      }
      if (!response.ok || !body.token) {
        // Problem details (RFC 9457): the detail says what is wrong with the key or the queue.
        throw new CallError(`Calling is not available: ${body.detail || `error ${response.status}`}.`);
      }
      return body.token;
    }

    connect(token) {
      const url = this.api.replace(/^http/, "ws") + "/v1/ws";
      return within(
        new Promise((resolve, reject) => {
          const ws = new WebSocket(url);
          this.ws = ws;
          let ready = null;
          // The token goes in the first message rather than the URL (which servers and proxies log).
          ws.onopen = () => ws.send(JSON.stringify({v: PROTOCOL_VERSION, type: "auth", token}));
          ws.onmessage = (e) => {
            let msg;
            try {
              msg = JSON.parse(e.data);
            } catch (_) {
              return;
            }
            if (ready) return this.receive(msg);
            if (msg.type === "ready") {
              ready = msg;
              resolve(msg);
            } else {
              reject(new CallError(`Calling is not available: ${msg.reason || msg.code || "refused"}.`));
            }
          };
          ws.onerror = () => {}; // onclose follows with what matters
          ws.onclose = () => {
            const closed = new CallError("The connection to the call service closed.");
            for (const w of this.waiting.values()) w.reject(closed);
            this.waiting.clear();
            if (!ready) reject(new CallError("The call service cannot be reached."));
            else if (this.ws === ws) this.finish("ended");
          };
        }),
        TIMEOUT_MS,
        "connect"
      );
    }

    send(type, fields) {
      const ref = `c${this.nextRef++}`;
      this.ws.send(JSON.stringify(Object.assign({v: PROTOCOL_VERSION, type, ref}, fields || {})));
      return ref;
    }

    request(type, fields) {
      return within(
        new Promise((resolve, reject) => this.waiting.set(this.send(type, fields), {resolve, reject})),
        TIMEOUT_MS,
        type
      );
    }

    receive(msg) {
      const waiting = msg.ref !== undefined && this.waiting.get(msg.ref);
      if (waiting) {
        this.waiting.delete(msg.ref);
        if (msg.type === "error") waiting.reject(new CallError(`The call failed: ${msg.reason}.`));
        else waiting.resolve(msg);
        return;
      }
      if (msg.type === "state" && msg.state === "connected") {
        this.show("connected");
      } else if (msg.type === "answered") {
        this.show("connected", "", this.labels.talking);
      } else if (msg.type === "position" && this.pc) {
        this.position = {position: msg.position, expected_wait_s: msg.expected_wait_s};
        const minutes = Math.max(1, Math.round((msg.expected_wait_s || 0) / 60));
        const wait = msg.expected_wait_s ? ` (about ${minutes} min)` : "";
        this.show("connected", "", `You are number ${msg.position} in line${wait}`);
      } else if (msg.type === "ended") {
        this.finish("ended");
      } else if (msg.type === "error" && msg.code === "token_expired") {
        this.finish("failed", "The call took too long to start: try again.");
      }
    }

    async offer(iceServers) {
      // Only the ICE servers the platform names (its TURN, when it has one): never a default public STUN.
      const pc = new RTCPeerConnection({
        iceServers: iceServers.map((s) => ({urls: s.urls, username: s.username, credential: s.credential})),
      });
      this.pc = pc;
      for (const track of this.mic.getAudioTracks()) pc.addTrack(track, this.mic);
      // The keypad's digits go over a data channel (media turns them into the call's digits, for menus).
      this.channel = pc.createDataChannel("dtmf");
      pc.ontrack = (e) => {
        this.audio.srcObject = e.streams[0] || new MediaStream([e.track]);
        this.audio.play().catch(() => {}); // started by the click: autoplay is allowed
      };
      const late = [];
      pc.onicecandidate = (e) => {
        if (!e.candidate) return;
        if (this.legId) this.trickle(e.candidate);
        else late.push(e.candidate);
      };
      pc.onconnectionstatechange = () => {
        if (pc === this.pc && pc.connectionState === "failed") {
          this.finish("failed", "The call's audio could not connect.");
        }
      };
      await pc.setLocalDescription(await pc.createOffer());
      // Wait briefly for candidates so the offer carries them; any later ones trickle as `ice`.
      await new Promise((resolve) => {
        if (pc.iceGatheringState === "complete") return resolve();
        pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
        setTimeout(resolve, ICE_GATHER_MS);
      });
      late.length = 0; // the offer below carries these
      const answer = await this.request("call", {sdp: pc.localDescription.sdp});
      if (pc !== this.pc) return; // hung up meanwhile
      this.legId = answer.leg_id;
      await pc.setRemoteDescription({type: "answer", sdp: answer.sdp});
      for (const c of late.splice(0)) this.trickle(c);
    }

    toggleKeypad(open) {
      const show = open === undefined ? this.keypad.hidden : open;
      this.keypad.hidden = !show;
      this.keysButton.setAttribute("aria-expanded", String(show));
    }

    // A key of the keypad: one digit to the call (a menu, an extension).
    press(digit) {
      if (!this.channel || this.channel.readyState !== "open") return false;
      this.channel.send(JSON.stringify({type: "dtmf", digit}));
      this.pressed += digit;
      return true;
    }

    trickle(c) {
      this.send("ice", {
        leg_id: this.legId, candidate: c.candidate, sdp_mid: c.sdpMid, sdp_mline_index: c.sdpMLineIndex,
      });
    }

    hangup() {
      if (this.ws && this.ws.readyState === WebSocket.OPEN && this.legId) this.send("hangup");
      this.finish("ended");
    }

    // End of a call, however it ended: close everything and show how it ended.
    finish(state, message) {
      if (this.state !== "calling" && this.state !== "connected") return;
      this.attempts++; // steps of this call still under way see that it is over
      const ws = this.ws;
      this.ws = null;
      if (this.pc) this.pc.close();
      this.pc = null;
      if (this.mic) for (const t of this.mic.getTracks()) t.stop();
      this.mic = null;
      this.legId = null;
      this.channel = null;
      this.audio.srcObject = null;
      if (ws) ws.close(); // after anything already sent (a `hangup`): close() queues behind it
      this.show(state, message);
    }

    destroy() {
      this.hangup();
      this.root.replaceChildren();
    }
  }

  global.Switchboard = Object.assign(global.Switchboard || {}, {
    widget: (options) => new Widget(options),
  });
})(window);
