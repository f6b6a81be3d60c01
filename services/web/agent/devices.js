// The agent desktop's devices (loaded after agent.js, whose helpers it uses): microphone and speaker choice,
// a live microphone level, a test sound on the chosen speaker, and a connection check, all before any call.
"use strict";

const meter = {stream: null, ctx: null, frame: 0, peak: 0};

async function listDevices() {
  const all = await navigator.mediaDevices.enumerateDevices().catch(() => []);
  for (const [kind, id] of [["audioinput", "mic"], ["audiooutput", "speaker"]]) {
    const select = $(id);
    const keep = desk.devices[id] || select.value;
    select.replaceChildren();
    const found = all.filter((d) => d.kind === kind);
    for (const d of found) option(select, d.deviceId, d.label || (id === "mic" ? "Microphone" : "Speaker"));
    if (!found.length) option(select, "", id === "mic" ? "No microphone found" : "Default speaker");
    if (keep) select.value = keep;
  }
  $("speaker").disabled = !HTMLMediaElement.prototype.setSinkId;
}

async function startMeter() {
  stopMeter();
  try {
    const id = $("mic").value;
    meter.stream = await navigator.mediaDevices.getUserMedia({audio: id ? {deviceId: {exact: id}} : true});
  } catch (err) {
    $("check-result").textContent = `Microphone: not available (${err.name}). Allow it in the browser's site settings.`;
    return;
  }
  await listDevices();
  meter.ctx = new AudioContext();
  const an = meter.ctx.createAnalyser();
  an.fftSize = 1024;
  meter.ctx.createMediaStreamSource(meter.stream).connect(an);
  const data = new Float32Array(an.fftSize);
  const draw = () => {
    an.getFloatTimeDomainData(data);
    const rms = Math.sqrt(data.reduce((s, v) => s + v * v, 0) / data.length);
    const level = Math.min(100, Math.round(rms * 400));
    meter.peak = Math.max(meter.peak, level);
    $("mic-level").style.width = `${level}%`;
    meter.frame = requestAnimationFrame(draw);
  };
  draw();
}

function stopMeter() {
  cancelAnimationFrame(meter.frame);
  if (meter.stream) for (const t of meter.stream.getTracks()) t.stop();
  if (meter.ctx) meter.ctx.close();
  meter.stream = meter.ctx = null;
}

$("devices-button").onclick = () => {
  const hidden = $("devices").classList.toggle("hidden");
  if (hidden) stopMeter();
  else startMeter();
};
$("mic").onchange = () => {
  desk.devices.mic = $("mic").value;
  startMeter();
};
$("speaker").onchange = () => {
  desk.devices.speaker = $("speaker").value;
  for (const el of [$("remote"), $("ringer")]) if (el.setSinkId) el.setSinkId(desk.devices.speaker).catch(() => {});
};
$("test-speaker").onclick = () => {
  const ctx = new AudioContext();
  const out = ctx.createMediaStreamDestination();
  const osc = ctx.createOscillator();
  osc.frequency.value = 660;
  osc.connect(out);
  osc.start();
  const el = new Audio();
  el.srcObject = out.stream;
  if (desk.devices.speaker && el.setSinkId) el.setSinkId(desk.devices.speaker).catch(() => {});
  el.play().catch(() => {});
  setTimeout(() => ctx.close(), 600);
};
$("check").onclick = async () => {
  const started = performance.now();
  const pong = await act("Connection", send("ping"));
  const mic = meter.peak > 2 ? "working (sound heard)" : meter.stream ? "on, but silent: speak to check" : "not checked";
  $("check-result").textContent = pong
    ? `Connection: good, ${Math.round(performance.now() - started)} ms round trip. Microphone: ${mic}.`
    : `Connection: no answer from Switchboard. Microphone: ${mic}.`;
  desk.preflight = {ok: Boolean(pong), mic: meter.peak};
};

