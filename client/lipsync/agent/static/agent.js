"use strict";
// The agent's page: one peer connection to the agent (microphone up; the avatar's video and
// voice down; a data channel for typed text), and what the page measures of what it receives.
//
// window.agent (read by the tests and perf/agent.py): status, errors, and
//   shown: [epoch ms a frame is displayed, its dark pixels in the probe box] for each frame,
//          with ?probe=x,y,w,h (video pixels), the box where the avatar's open mouth is dark;
//   heard: [epoch ms a 10 ms block plays, its RMS] of the avatar's voice (WebAudio's tap);
//   played: [epoch ms, audio level] of each audio packet as the receiver plays it out (its
//           synchronization sources, polled);
//   stats: the video's bitrate, frame rate and size each second, from getStats();
//   playoutOffsetsMs: each second, how far the picture shown is ahead of the sound played.
const DARK_LEVEL = 60;
const agent = (window.agent = {
  status: "not connected",
  errors: [],
  shown: [],
  heard: [],
  played: [],
  stats: [],
  playoutOffsetsMs: [],
});
const query = new URLSearchParams(location.search);
const probe = query.get("probe") ? query.get("probe").split(",").map(Number) : null;
const video = document.querySelector("#face");
const microphoneBox = document.querySelector("#microphone");
let peer = null;
let channel = null;
let microphone = null;

function setStatus(text) {
  agent.status = text;
  document.querySelector("#status").textContent = text;
}

function fail(error) {
  agent.errors.push(String(error));
  setStatus(`failed: ${error}`);
}

async function connect() {
  setStatus("connecting");
  const media = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  });
  microphone = media.getAudioTracks()[0];
  microphone.enabled = microphoneBox.checked;
  peer = new RTCPeerConnection(); // no STUN or TURN: the agent is reached directly
  // Pipecat's transport takes the first transceiver as audio and the second as video.
  peer.addTransceiver(microphone, { direction: "sendrecv" });
  peer.addTransceiver("video", { direction: "sendrecv" });
  channel = peer.createDataChannel("messages", { ordered: true });
  const received = new MediaStream();
  peer.ontrack = (event) => {
    received.addTrack(event.track);
    video.srcObject = received;
    if (event.track.kind === "audio") {
      listen(received).catch(fail);
      watchPlayout(event.receiver);
    }
  };
  peer.onconnectionstatechange = () => setStatus(peer.connectionState);
  await peer.setLocalDescription(await peer.createOffer());
  await gathered(peer);
  const response = await fetch("/api/offer", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ type: "offer", sdp: peer.localDescription.sdp }),
  });
  if (!response.ok) throw new Error(await response.text());
  await peer.setRemoteDescription(await response.json());
  video.requestVideoFrameCallback(onFrame);
  setInterval(() => measureBitrate().catch(fail), 1000);
}

function gathered(connection) {
  // The offer carries every candidate (the agent takes no trickled ones).
  if (connection.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    connection.onicegatheringstatechange = () => {
      if (connection.iceGatheringState === "complete") resolve();
    };
  });
}

function say(text) {
  if (!channel || channel.readyState !== "open") throw new Error("not connected");
  channel.send(JSON.stringify({ type: "say", text }));
}

// Measurements ------------------------------------------------------------------------------

const canvas = document.createElement("canvas");
const canvasContext = canvas.getContext("2d", { willReadFrequently: true });

function onFrame(now, frame) {
  const at = performance.timeOrigin + frame.expectedDisplayTime;
  let dark = null;
  if (probe) {
    const [x, y, width, height] = probe;
    canvas.width = width;
    canvas.height = height;
    canvasContext.drawImage(video, x, y, width, height, 0, 0, width, height);
    const pixels = canvasContext.getImageData(0, 0, width, height).data;
    dark = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      if (Math.max(pixels[i], pixels[i + 1], pixels[i + 2]) < DARK_LEVEL) dark++;
    }
  }
  agent.shown.push([at, dark]);
  video.requestVideoFrameCallback(onFrame);
}

async function listen(stream) {
  const context = new AudioContext();
  await context.audioWorklet.addModule("/static/meter.js");
  const meter = new AudioWorkletNode(context, "meter");
  const mute = new GainNode(context, { gain: 0 }); // pulls the meter; the video element plays the voice
  context.createMediaStreamSource(stream).connect(meter).connect(mute).connect(context.destination);
  agent.audioOutputLatencyMs = 1000 * (context.outputLatency + context.baseLatency);
  meter.port.onmessage = (message) => {
    const [blockTime, rms] = message.data;
    const output = context.getOutputTimestamp(); // the context time being heard now, and when
    const at = performance.timeOrigin + output.performanceTime + (blockTime - output.contextTime) * 1000;
    agent.heard.push([at, rms]);
  };
}

function watchPlayout(receiver) {
  let last = null;
  setInterval(() => {
    for (const source of receiver.getSynchronizationSources()) {
      if (source.rtpTimestamp === last) continue;
      last = source.rtpTimestamp;
      // Chromium gives the epoch in ms; the specification, the page's time origin.
      const at = source.timestamp > 1e12 ? source.timestamp : performance.timeOrigin + source.timestamp;
      agent.played.push([at, source.audioLevel || 0]);
    }
  }, 5);
}

let previous = null;

// Each track's mean jitter-buffer delay, ms: how long the browser held what it received.
function jitterBufferMs(entry) {
  return entry.jitterBufferEmittedCount ? (1000 * entry.jitterBufferDelay) / entry.jitterBufferEmittedCount : null;
}

async function measureBitrate() {
  const report = await peer.getStats();
  const playing = {};
  report.forEach((entry) => {
    if (entry.type === "inbound-rtp") playing[entry.kind] = entry.estimatedPlayoutTimestamp;
    if (entry.type === "inbound-rtp" && entry.kind === "audio") agent.audioJitterBufferMs = jitterBufferMs(entry);
  });
  // The sender's clock time of the picture on screen minus that of the sound being played: the
  // browser's own lip-sync estimate (0: in sync; its mapping is the sender's send times).
  if (playing.audio && playing.video) agent.playoutOffsetsMs.push(playing.video - playing.audio);
  report.forEach((entry) => {
    if (entry.type !== "inbound-rtp" || entry.kind !== "video") return;
    agent.videoJitterBufferMs = jitterBufferMs(entry);
    if (previous) {
      const seconds = (entry.timestamp - previous.timestamp) / 1000;
      agent.stats.push({
        bitsPerSecond: ((entry.bytesReceived - previous.bytesReceived) * 8) / seconds,
        framesPerSecond: (entry.framesDecoded - previous.framesDecoded) / seconds,
        width: entry.frameWidth,
        height: entry.frameHeight,
      });
      const last = agent.stats[agent.stats.length - 1];
      document.querySelector("#stats").textContent =
        `video ${last.width}x${last.height}, ${last.framesPerSecond.toFixed(1)} frames/s, ` +
        `${(last.bitsPerSecond / 1e6).toFixed(2)} Mbit/s`;
    }
    previous = entry;
  });
}

// Controls ----------------------------------------------------------------------------------

agent.setMicrophone = (on) => {
  microphoneBox.checked = on;
  if (microphone) microphone.enabled = on;
};
agent.say = say;

document.querySelector("#connect").addEventListener("click", () => connect().catch(fail));
microphoneBox.addEventListener("change", () => agent.setMicrophone(microphoneBox.checked));
document.querySelector("#say").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = document.querySelector("#text").value.trim();
  if (text) {
    try {
      say(text);
    } catch (error) {
      fail(error);
    }
  }
});
