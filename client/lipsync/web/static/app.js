// The page: live mode streams the microphone to the gateway and plays the avatar it sends back,
// 25 frames a second, each with its 40 ms of audio (idle, with silence, until speech reaches it);
// file mode renders a file and plays it. Frames and audio are scheduled on one clock, the audio
// context's: frame k shows at start + k / 25 s, where start is when the first frame arrived plus a
// buffer for the network's jitter (live), or when playback begins (file).

const FPS = 25;
const RATE = 16000; // the server's rate: the audio context runs at it, the browser resamples the mic
const CHUNK = 3200; // 200 ms of audio per message
const DECODE_AHEAD = 8; // frames decoded before they are due
const HEADER = 13; // frame number, loop position (uint32), flags (uint8), JPEG length (uint32)
const SPEAKING = 1; // flags: the frame shows speech
const HELD = 2; // flags: the frame before, again, with silence (the loop waited)
const LATE = 4; // flags: another picture than this frame's own (it was late), on its own audio
const DARK_LEVEL = 60; // a pixel darker than this in every channel is the open mouth's inside

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

// What the page measured, for people and for tests (window.lipsync).
const state = (window.lipsync = {
  connection: "connecting",
  status: "idle",
  framesReceived: 0,
  framesDrawn: 0,
  framesLate: 0,
  drawnIndex: -1,
  samplesSent: 0,
  speakingFrames: 0, // live frames that show speech (not held)
  lateFrames: 0, // of those, the ones shown with another picture (rendered too late), on their own audio
  speechToPictureMs: null, // from the first speech captured to its first frame shown
  frameInfo: [], // per frame: [loop position, flags]
  syncOffsetsMs: [], // a drawn frame's display after its audio is heard
  mouth: [], // with ?probe=x,y,w,h (frame pixels): each drawn frame's dark pixels in that box
  hashes: [], // SHA-256 of each frame's JPEG
  errors: [],
});

let socket = null;
let reconnectDelay = 500;
let session = null;
let audioContext = null;
let workletLoaded = false;
const probe = params.get("probe") ? params.get("probe").split(",").map(Number) : null;
const canvas = $("view");
const painter = canvas.getContext("2d", { willReadFrequently: Boolean(probe) });

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    setConnection("open");
    reconnectDelay = 500;
  };
  socket.onclose = () => {
    setConnection("closed");
    if (session && (state.status === "running" || state.status === "flushing")) {
      fail("the connection to the gateway was lost: reconnecting; start again when it is back");
      endSession();
    }
    setTimeout(connect, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 5000);
  };
  socket.onmessage = onMessage;
}

function setConnection(value) {
  state.connection = value;
  const badge = $("connection");
  badge.textContent = value === "open" ? "connected" : "gateway unreachable: reconnecting…";
  badge.className = `badge ${value}`;
}

function message(text) {
  $("messages").textContent = text;
}

function fail(text) {
  state.errors.push(text);
  message(text);
  if (session && session.mode === "live") stopCapture(session);
  state.status = "failed";
  setButtons(false);
}

function setButtons(running) {
  $("live").disabled = running;
  $("render").disabled = running;
  $("stop").disabled = !running || !session || session.mode !== "live";
}

async function context() {
  if (!audioContext) audioContext = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
  if (audioContext.state === "suspended") await audioContext.resume();
  return audioContext;
}

function newSession(mode, ctx) {
  endSession();
  Object.assign(state, {
    status: "running",
    framesReceived: 0,
    framesDrawn: 0,
    framesLate: 0,
    drawnIndex: -1,
    samplesSent: 0,
    speakingFrames: 0,
    lateFrames: 0,
    speechToPictureMs: null,
    frameInfo: [],
    syncOffsetsMs: [],
    mouth: [],
    hashes: [],
  });
  message("");
  session = { mode, ctx, t0: null, startAt: null, jpegs: new Map(), bitmaps: new Map() };
  setButtons(true);
  return session;
}

function endSession() {
  if (!session) return;
  if (session.mode === "live") stopCapture(session);
  for (const bitmap of session.bitmaps.values()) if (bitmap) bitmap.close();
  session.bitmaps.clear();
}

function selected() {
  return { avatar: $("avatar").value, version: Number($("version").value) || 0 };
}

function ready() {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    fail("the gateway is not connected yet");
    return false;
  }
  return true;
}

// Live mode ---------------------------------------------------------------------------------

async function startLive() {
  if (!ready()) return;
  const ctx = await context();
  let microphone;
  try {
    microphone = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
    });
  } catch (error) {
    fail(`no microphone: ${error.name} (${error.message})`);
    return;
  }
  if (!workletLoaded) {
    await ctx.audioWorklet.addModule("/static/capture.js");
    workletLoaded = true;
  }
  const live = newSession("live", ctx);
  live.buffer = Number($("buffer").value) || 0.3;
  live.microphone = microphone;
  live.quietSamples = 0;
  const source = ctx.createMediaStreamSource(microphone);
  const capture = new AudioWorkletNode(ctx, "capture", { processorOptions: { chunk: CHUNK } });
  const mute = ctx.createGain(); // the worklet runs only when connected to the output
  mute.gain.value = 0;
  source.connect(capture).connect(mute).connect(ctx.destination);
  live.nodes = [source, capture, mute];
  socket.send(JSON.stringify({ type: "live", ...selected() }));
  capture.port.onmessage = ({ data }) => onChunk(live, data);
}

function onChunk(live, { frame, samples }) {
  if (live !== session || live.stopping) return;
  if (live.t0 === null) live.t0 = frame / RATE;
  const pcm = new Int16Array(samples.length);
  let peak = 0;
  for (let i = 0; i < samples.length; i++) {
    const value = Math.max(-1, Math.min(1, samples[i]));
    pcm[i] = value * 32767;
    peak = Math.max(peak, Math.abs(value));
  }
  socket.send(pcm.buffer);
  state.samplesSent += samples.length;
  live.quietSamples = peak < 1e-4 ? live.quietSamples + samples.length : 0;
  if (live.quietSamples >= 3 * RATE) message("no sound from the microphone for 3 s: is it muted?");
}

function stopCapture(live) {
  if (live.stopping) return;
  live.stopping = true;
  if (live.microphone) live.microphone.getTracks().forEach((track) => track.stop());
  if (live.nodes) live.nodes.forEach((node) => node.disconnect());
}

function stopLive() {
  if (!session || session.mode !== "live") return;
  stopCapture(session);
  state.status = "flushing";
  socket.send(JSON.stringify({ type: "stop" }));
  $("stop").disabled = true;
}

// File mode ---------------------------------------------------------------------------------

async function renderFile() {
  const file = $("file").files[0];
  if (!file) {
    fail("choose an audio file first");
    return;
  }
  if (!ready()) return;
  const ctx = await context();
  const bytes = await file.arrayBuffer();
  const render = newSession("file", ctx);
  socket.send(JSON.stringify({ type: "file", ...selected() }));
  socket.send(bytes);
  try {
    render.audio = await ctx.decodeAudioData(bytes.slice(0));
  } catch {
    render.audio = null; // the gateway says why it cannot read the file
  }
}

function play(render) {
  const at = render.ctx.currentTime + 0.3;
  if (render.audio) {
    const player = render.ctx.createBufferSource();
    player.buffer = render.audio;
    player.connect(render.ctx.destination);
    player.start(at);
  }
  render.startAt = at;
}

// Frames ------------------------------------------------------------------------------------

function onMessage(event) {
  if (typeof event.data === "string") {
    const note = JSON.parse(event.data);
    if (note.type === "error") fail(note.message);
    if (note.type === "done" && session) {
      state.status = "done";
      state.framesExpected = note.frames;
      setButtons(false);
      if (session.mode === "file") play(session);
    }
    return;
  }
  if (!session) return;
  const header = new DataView(event.data, 0, HEADER);
  const [index, position, flags] = [header.getUint32(0), header.getUint32(4), header.getUint8(8)];
  const jpeg = event.data.slice(HEADER, HEADER + header.getUint32(9));
  state.framesReceived += 1;
  state.frameInfo[index] = [position, flags];
  if (session.mode === "live") playLive(session, index, flags, new Int16Array(event.data.slice(HEADER + jpeg.byteLength)));
  session.jpegs.set(index, new Blob([jpeg], { type: "image/jpeg" }));
  const hashes = state.hashes; // this session's, even if the digest comes after the next one starts
  crypto.subtle.digest("SHA-256", jpeg).then((digest) => {
    hashes[index] = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  });
}

function playLive(live, index, flags, pcm) {
  // The frame's audio, played while it shows; the first frame sets the clock.
  if (live.startAt === null) live.startAt = live.ctx.currentTime + live.buffer;
  if (flags & SPEAKING && !(flags & HELD)) {
    state.speakingFrames += 1;
    if (flags & LATE) state.lateFrames += 1;
    else if (live.firstSpeaking === undefined) live.firstSpeaking = index;
  }
  const at = live.startAt + index / FPS;
  if (at < live.ctx.currentTime || !pcm.length) return; // too late to play: its frame is dropped too
  const samples = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
  const buffer = live.ctx.createBuffer(1, samples.length, RATE);
  buffer.copyToChannel(samples, 0);
  const player = live.ctx.createBufferSource();
  player.buffer = buffer;
  player.connect(live.ctx.destination);
  player.start(at);
}

function heardNow(ctx) {
  // What the listener hears now was scheduled this much earlier on the context's clock.
  return ctx.currentTime - (ctx.baseLatency || 0) - (ctx.outputLatency || 0);
}

function draw() {
  requestAnimationFrame(draw);
  const current = session;
  if (!current || current.startAt === null) return;
  const heard = heardNow(current.ctx);
  const due = Math.floor((heard - current.startAt) * FPS);
  for (let index = Math.max(due, 0); index < due + DECODE_AHEAD; index++) decode(current, index);
  for (const index of current.jpegs.keys()) {
    if (index >= due) continue; // a frame whose time has passed is dropped: late, or already shown
    const bitmap = current.bitmaps.get(index);
    if (bitmap) bitmap.close();
    current.bitmaps.delete(index);
    current.jpegs.delete(index);
    if (index > state.drawnIndex) state.framesLate += 1;
  }
  const bitmap = current.bitmaps.get(due);
  if (due >= 0 && bitmap && due !== state.drawnIndex) {
    if (canvas.width !== bitmap.width) [canvas.width, canvas.height] = [bitmap.width, bitmap.height];
    painter.drawImage(bitmap, 0, 0);
    state.drawnIndex = due;
    state.framesDrawn += 1;
    state.syncOffsetsMs.push((heard - (current.startAt + due / FPS)) * 1000);
    if (due === current.firstSpeaking && current.t0 !== null) state.speechToPictureMs = (heard - current.t0) * 1000;
    if (probe) state.mouth[due] = darkPixels(probe);
  }
}

function darkPixels([x, y, width, height]) {
  const pixels = painter.getImageData(x, y, width, height).data;
  let dark = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    if (Math.max(pixels[i], pixels[i + 1], pixels[i + 2]) < DARK_LEVEL) dark++;
  }
  return dark;
}

function decode(current, index) {
  const jpeg = current.jpegs.get(index);
  if (!jpeg || current.bitmaps.has(index)) return;
  current.bitmaps.set(index, null);
  createImageBitmap(jpeg).then((bitmap) => {
    if (current.bitmaps.has(index)) current.bitmaps.set(index, bitmap);
    else bitmap.close();
  });
}

let lastCount = 0;
function showStats() {
  const latency = state.speechToPictureMs;
  $("latency").textContent = latency === null ? "–" : `${(latency / 1000).toFixed(2)} s`;
  $("fps").textContent = `${(state.framesReceived - lastCount) * 2}`;
  $("frames").textContent = `${state.framesReceived} received, ${state.framesDrawn} shown, ${state.framesLate} late`;
  lastCount = state.framesReceived;
}

async function loadAvatars() {
  try {
    const response = await fetch("/api/avatars");
    const body = await response.json();
    if (!response.ok) throw new Error(body.error);
    const avatars = $("avatar");
    avatars.replaceChildren(...body.map((a) => new Option(a.name, a.name)));
    const wanted = params.get("avatar");
    if (wanted) {
      if (![...avatars.options].some((o) => o.value === wanted)) avatars.add(new Option(wanted, wanted));
      avatars.value = wanted;
    }
    const fill = () => {
      const entry = body.find((a) => a.name === avatars.value);
      const versions = entry ? entry.versions : [];
      $("version").replaceChildren(new Option("latest", "0"), ...versions.map((v) => new Option(`${v}`, `${v}`)));
    };
    avatars.onchange = fill;
    fill();
    if (params.get("version")) $("version").value = params.get("version");
  } catch (error) {
    fail(`could not list the avatars: ${error.message}`);
  }
}

if (params.get("buffer")) $("buffer").value = params.get("buffer");
$("live").onclick = startLive;
$("stop").onclick = stopLive;
$("render").onclick = renderFile;
connect();
loadAvatars();
requestAnimationFrame(draw);
setInterval(showStats, 500);
