"""`make bench-agent`: the example agent (lipsync.agent) with the trained demo as its face, over
WebRTC to Debian's Chromium (headless, fake microphone), measured against the issue's targets.

One conversation: the page connects; a reply (the held-out speech: 3 s, a pause to 4.4 s, 4 s
more) reaches the avatar service as a TTS service sends it (24 kHz, 20 ms frames, all at once);
it plays out; the page listens idle; a second reply starts and the page's microphone (espeak-ng's
voice, looped) interrupts it through Pipecat's VAD. Then the VP8 cost at three frame sizes, and
the server's frames/s when saturated, for the many-sessions estimate.

Figures: first frame after the first TTS audio (service side); interruption to the last
speaking frame (service side, and displayed at the page); audio-video offset at the page
(mouth movement against loudness, compared with the same at the service's output); network
inferences while idle; video bitrate and frame rate (getStats); the agent process's CPU per
stream. Report: out/bench-agent/report.md and report.json.
"""

import argparse
import asyncio
import fractions
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from aiohttp import web
from aiortc.codecs.vpx import Vp8Encoder
from PIL import Image
from pipecat.frames.frames import (
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed

from lipsync.agent.app import VIDEO_SIZE, Agent
from lipsync.client import LipsyncClient
from lipsync.conversation import RENDERED
from lipsync.pipecat_service import METADATA_KEY, LipsyncAvatarService
from lipsync.web.guard import origins_for
from lipsync_protocol import framing, waiting
from lipsync_server.avatars.media import AvatarMedia, media_dir
from lipsync_server.calibration import voice
from lipsync_server.demo import synthetic, training
from lipsync_server.launcher.tritonserver import TritonServer, free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from web_latency import browser, wait_until, write_wav  # noqa: E402  (the page's headless Chromium)

ROOT = Path(__file__).resolve().parents[1]
TTS_RATE = 24_000
DARK_LEVEL = 60  # the page's level (agent.js): the open mouth's inside is darker in every channel
FRAME_MS = 1000 / framing.FPS
SILENT_RMS = 0.01
# The audio level RTP carries (0..1, from dBov; 20 ms packets) above which a packet is speech.
PLAYED_LEVEL = 0.02


# The agent in this process --------------------------------------------------------------------


@dataclass
class Timeline:
    """What reached and left the avatar service: pipeline-clock nanoseconds, made wall-clock
    (epoch seconds) by the smallest gap seen between the two (observers run a little later)."""

    replies: list[float] = field(default_factory=list)  # when a reply's first audio was handed over
    interruptions: list[int] = field(default_factory=list)
    pictures: list[tuple[int, bool, int]] = field(default_factory=list)  # (time, speaking, dark)
    positions: list[int] = field(default_factory=list)  # each picture's loop position
    shown: list[str] = field(default_factory=list)  # each picture's kind: rendered, substituted or held
    sounds: list[tuple[int, np.ndarray]] = field(default_factory=list)
    offset_ns: int | None = None

    def wall(self, stamp: int) -> float:
        assert self.offset_ns is not None
        return (stamp + self.offset_ns) / 1e9


class Watch(BaseObserver):
    def __init__(self, timeline: Timeline, probe: tuple[int, int, int, int]):
        super().__init__()
        self.timeline, self.probe = timeline, probe
        self.avatar: LipsyncAvatarService | None = None  # the newest conversation's

    async def on_push_frame(self, data: FramePushed):
        gap = time.time_ns() - data.timestamp
        line = self.timeline
        line.offset_ns = gap if line.offset_ns is None else min(line.offset_ns, gap)
        frame = data.frame
        if isinstance(data.source, LipsyncAvatarService):
            self.avatar = data.source
        if isinstance(data.destination, LipsyncAvatarService):
            if isinstance(frame, InterruptionFrame):
                line.interruptions.append(data.timestamp)
        elif isinstance(data.source, LipsyncAvatarService):
            if isinstance(frame, OutputImageRawFrame) and METADATA_KEY in frame.metadata:
                width, height = frame.size
                x, y, w, h = self.probe
                pixels = np.frombuffer(frame.image, np.uint8).reshape(height, width, 3)[y : y + h, x : x + w]
                dark = int((pixels.max(axis=2) < DARK_LEVEL).sum())
                shown = frame.metadata[METADATA_KEY]
                line.pictures.append((data.timestamp, shown["speaking"], dark))
                line.positions.append(shown["position"])
                line.shown.append(shown["shown"])
            elif type(frame) is OutputAudioRawFrame:
                line.sounds.append((data.timestamp, np.frombuffer(frame.audio, "<i2").astype(np.float32) / 32768))


class AgentThread:
    """lipsync.agent.app.Agent served on a loopback port from a thread of its own."""

    def __init__(self, grpc_url: str, port: int, probe, video_size=VIDEO_SIZE, version: int | None = None):
        self.timeline = Timeline()
        self.url = f"http://127.0.0.1:{port}/"
        self.watch = Watch(self.timeline, probe)
        self.agent = Agent(
            grpc_url,
            "demo",
            version,
            origins=origins_for("127.0.0.1", port, []),
            video_size=video_size,
            observers=[self.watch],
        )
        self.loop = asyncio.new_event_loop()
        self.port = port
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> "AgentThread":
        self.thread.start()
        self.runner = web.AppRunner(self.agent.app())
        self.call(self.runner.setup())
        self.call(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        return self

    def call(self, coroutine, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def reply(self, audio: np.ndarray) -> None:
        """The reply as a TTS service sends it, at once, into the avatar service."""
        avatar = self.watch.avatar
        assert avatar is not None, "no conversation has shown a frame yet"

        async def send():
            self.timeline.replies.append(time.time())
            for frame in [TTSStartedFrame(), *tts_frames(audio), TTSStoppedFrame()]:
                await avatar.queue_frame(frame)

        self.call(send())

    def stop(self) -> None:
        self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def tts_frames(audio_16k: np.ndarray) -> list[TTSAudioRawFrame]:
    """16 kHz speech as a 24 kHz TTS service sends it: 16-bit PCM in 20 ms frames."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=TTS_RATE)
    frame = av.AudioFrame.from_ndarray(audio_16k.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = framing.SAMPLE_RATE
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in [*resampler.resample(frame), *resampler.resample(None)]])
    step = TTS_RATE // 50
    return [TTSAudioRawFrame(pcm[i : i + step].tobytes(), TTS_RATE, 1) for i in range(0, pcm.size, step)]


def probe_box(repository: Path, video_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x, y, w, h) in video pixels holding the demo's open mouth in every frame."""
    media = AvatarMedia(media_dir(repository, "demo"))
    boxes = np.array([synthetic.mouth_box(rect) for rect in media.rects])
    (x1, y1), (x2, y2) = boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)
    with Image.open(media.frame_paths[0]) as first:
        scale = video_size[0] / first.size[0]
    return (int(x1 * scale), int(y1 * scale), int(np.ceil((x2 - x1) * scale)), int(np.ceil((y2 - y1) * scale)))


# Figures ----------------------------------------------------------------------------------------


def events(times: np.ndarray, on: np.ndarray, quiet_s: float = 0.5) -> list[tuple[str, float]]:
    """("start" | "stop", time) where `on` turns true after, or false before, `quiet_s` off."""
    found, last_on = [], None
    for t, state in zip(times, on):
        if state:
            if last_on is None or t - last_on > quiet_s:
                if last_on is not None:
                    found.append(("stop", last_on))
                found.append(("start", t))
            last_on = t
    if last_on is not None:
        found.append(("stop", last_on))
    return found


def mouth_events(shown: list[tuple[float, int]]) -> list[tuple[str, float]]:
    times, dark = np.array([t for t, _ in shown]), np.array([d for _, d in shown], float)
    return events(times, dark > dark.max() / 3)


def voice_events(heard: list[tuple[float, float]], level: float = SILENT_RMS) -> list[tuple[str, float]]:
    times, loudness = np.array([t for t, _ in heard]), np.array([r for _, r in heard])
    return events(times, loudness > level)


def delays_ms(sent: list[tuple[str, float]], received: list[tuple[str, float]]) -> list[float]:
    """For each event received, the time since the latest event of its kind sent before it
    (within a second): one modality's delay from the service's output to the page."""
    found = []
    for kind, at in received:
        earlier = [t for k, t in sent if k == kind and 0 <= at - t <= 1.0]
        if earlier:
            found.append((at - max(earlier)) * 1000)
    return found


def av_skew_ms(page: dict, line: Timeline, since: float, until: float) -> dict:
    """How much later the page shows the mouth's movements than it plays the voice's, beyond
    what the service sent: each modality's delay from the service's output to the page (its
    speech starts and stops, matched to the service's), video's minus audio's."""
    service_video = [(line.wall(t), d) for t, _, d in line.pictures if since <= line.wall(t) <= until]
    service_audio = []
    for t, samples in line.sounds:
        start = line.wall(t)
        if since <= start <= until:
            blocks = samples.reshape(-1, framing.SAMPLE_RATE // 100)
            service_audio += [(start + k / 100, float(np.sqrt((b * b).mean()))) for k, b in enumerate(blocks)]
    page_video = [(t / 1000, d) for t, d in page["shown"] if since <= t / 1000 <= until + 2]
    page_audio = [(t / 1000, r) for t, r in page["heard"] if since <= t / 1000 <= until + 2]
    page_played = [(t / 1000, level) for t, level in page["played"] if since <= t / 1000 <= until + 2]
    video = delays_ms(mouth_events(service_video), mouth_events(page_video))
    audio = delays_ms(voice_events(service_audio), voice_events(page_audio))
    played = delays_ms(voice_events(service_audio), voice_events(page_played, PLAYED_LEVEL))
    return {
        "video_delay_ms": [round(x, 1) for x in video],
        "audio_delay_ms": [round(x, 1) for x in audio],
        "played_delay_ms": [round(x, 1) for x in played],
        "skew_ms": median_gap(video, audio),
        "skew_played_ms": median_gap(video, played),
    }


def median_gap(video: list[float], audio: list[float]) -> float | None:
    return round(float(np.median(video) - np.median(audio)), 1) if video and audio else None


def server_frames_per_second(grpc_url: str, version: int | None, streams: int = 3, seconds: float = 4.0) -> float:
    """Frames/s the server renders with `streams` renders at once (saturated on a small CPU)."""
    audio = voice.speech(seconds, framing.SAMPLE_RATE, seed=5)

    def one(_):
        with LipsyncClient(grpc_url) as client:
            return len(client.render(audio, framing.SAMPLE_RATE, "demo", version))

    with ThreadPoolExecutor(streams) as pool:
        began = time.perf_counter()
        frames = sum(pool.map(one, range(streams)))
    return frames / (time.perf_counter() - began)


def vp8_cost(repository: Path, sizes, frames: int = 100) -> list[dict]:
    """CPU ms and bitrate of aiortc's VP8 encoder on the demo's frames, at each size."""
    paths = AvatarMedia(media_dir(repository, "demo")).frame_paths[:50]
    originals = [Image.open(path).convert("RGB") for path in paths]
    rows = []
    for size in sizes:
        pictures = [np.asarray(image.resize(size, Image.Resampling.BILINEAR)) for image in originals]
        encoder, sent = Vp8Encoder(), 0
        began = time.process_time()
        for k in range(frames):
            picture = av.VideoFrame.from_ndarray(pictures[k % len(pictures)], format="rgb24")
            picture.pts, picture.time_base = k * 3600, fractions.Fraction(1, 90_000)
            payloads, _ = encoder.encode(picture)
            sent += sum(len(p) for p in payloads)
        rows.append(
            {
                "size": f"{size[0]}x{size[1]}",
                "cpu_ms_per_frame": round((time.process_time() - began) * 1000 / frames, 1),
                "mbit_per_s": round(sent * 8 / (frames / framing.FPS) / 1e6, 2),
            }
        )
    return rows


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def microphone_speech(path: Path) -> Path:
    """What the user says over the avatar: real synthetic speech (espeak-ng), which Silero's VAD
    takes for a voice, at 16 kHz."""
    spoken = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-w", str(spoken), "--", "Wait, wait. I have a question about that."], check=True)
    with av.open(str(spoken)) as source:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=framing.SAMPLE_RATE)
        pieces = [f.to_ndarray().reshape(-1) for frame in source.decode(audio=0) for f in resampler.resample(frame)]
    return write_wav(path, np.concatenate([*pieces, np.zeros(framing.SAMPLE_RATE // 2, np.float32)]))


def until(condition, what: str, timeout_s: float = 600.0) -> None:
    """Waits for `condition()` (polled), or fails naming `what` (a guard against a hang: a slow
    machine shows a reply late, not wrongly)."""
    waiting.until(condition, timeout_s, what, interval_s=0.05)


def face_inferences(grpc_url: str) -> int:
    with LipsyncClient(grpc_url) as client:
        return sum(stats["inferences"] for name, stats in client.statistics().items() if name.startswith("avatar_"))


@dataclass
class Run:
    figures: dict
    page: dict  # the page's window.agent at the end
    timeline: Timeline


def run_conversation(
    grpc_url: str, repository: Path, workdir: Path, version: int | None, idle_s: float, reply_s: float | None = None
) -> Run:
    """One conversation through the agent and the page: its figures, the page's state and the
    service's timeline. `reply_s`: the first reply's length (default: the whole held-out speech;
    the second, interrupted, is always whole)."""
    speech = training.held_out_speech()
    microphone = microphone_speech(workdir / "microphone.wav")
    probe = probe_box(repository, VIDEO_SIZE)
    agent = AgentThread(grpc_url, free_port(), probe, version=version).start()
    line = agent.timeline
    figures: dict = {"video_size": f"{VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}"}
    try:
        with browser(microphone, loop=True) as page:
            page.goto(agent.url + "?probe=" + ",".join(map(str, probe)))
            page.evaluate("agent.setMicrophone(false)")
            page.click("#connect")
            wait_until(page, "agent.status === 'connected' || agent.errors.length > 0", 120)
            wait_until(page, f"agent.shown.length >= {framing.FPS}", 600)  # the idle face plays

            # A reply, played out whole, then a second of idle face.
            reply_at = time.time()
            agent.reply(speech if reply_s is None else speech[: round(reply_s * framing.SAMPLE_RATE)])
            until(lambda: any(s for _, s, _ in line.pictures[-framing.FPS :]), "the reply is shown")
            until(lambda: not any(s for _, s, _ in line.pictures[-framing.FPS :]), "the reply ends")
            reply_end = time.time()

            # Listening: what an idle conversation costs.
            shown, inferences, cpu = len(line.pictures), face_inferences(grpc_url), process_cpu_s()
            began = time.monotonic()
            until(lambda: len(line.pictures) >= shown + idle_s * framing.FPS, "idle frames")
            listened = time.monotonic() - began
            figures["idle_inferences_per_min"] = (face_inferences(grpc_url) - inferences) * 60 / listened
            figures["agent_cpu_per_stream_idle"] = (process_cpu_s() - cpu) / listened

            # A second reply, interrupted by the microphone.
            interrupted_reply_at = time.time()
            agent.reply(speech)
            speaking_before = sum(s for _, s, _ in line.pictures)
            until(lambda: sum(s for _, s, _ in line.pictures) >= speaking_before + framing.FPS, "the second reply")
            page.evaluate("agent.setMicrophone(true)")
            until(lambda: line.interruptions, "an interruption from the microphone's speech")
            interrupted = len(line.pictures)
            until(lambda: len(line.pictures) >= interrupted + 2 * framing.FPS, "frames after the interruption")
            page.evaluate("agent.setMicrophone(false)")
            state = page.evaluate("agent")
    finally:
        agent.stop()

    figures["page_errors"] = state["errors"]
    for name in ("audioJitterBufferMs", "videoJitterBufferMs", "audioOutputLatencyMs", "playoutOffsetsMs"):
        figures[name] = state.get(name)
    first_tts = line.replies[0]
    # The first picture rendered from the reply's audio (not one held or substituted meanwhile).
    first_speaking = min(
        line.wall(t)
        for (t, s, _), kind in zip(line.pictures, line.shown)
        if s and kind == RENDERED and line.wall(t) >= reply_at
    )
    figures["first_frame_ms"] = round((first_speaking - first_tts) * 1000, 1)

    cut = line.wall(line.interruptions[0])
    after = [line.wall(t) for t, s, _ in line.pictures if s and line.wall(t) > cut]
    figures["interruption_last_speaking_frame_ms"] = round((max(after) - cut) * 1000, 1) if after else 0.0
    figures["speaking_frames_after_interruption"] = len(after)
    shown_at_page = [(t / 1000, d) for t, d in state["shown"]]
    speaking_level = max(d for _, d in shown_at_page) / 3
    open_after = [t for t, d in shown_at_page if t > cut and d > speaking_level]
    figures["interruption_mouth_open_at_page_ms"] = round((max(open_after) - cut) * 1000, 1) if open_after else 0.0
    figures["interrupted_reply_began_ms_before_cut"] = round((cut - interrupted_reply_at) * 1000)

    figures["av"] = av_skew_ms(state, line, reply_at, reply_end)
    in_reply = [i for i, (t, _, _) in enumerate(line.pictures) if reply_at <= line.wall(t) <= reply_end]
    late = sum(line.pictures[i][1] and line.shown[i] != RENDERED for i in in_reply)
    figures["reply_pictures"], figures["reply_pictures_late"] = len(in_reply), late
    rates = [entry for entry in state["stats"] if entry["framesPerSecond"] > 0][2:]  # after the start-up
    figures["video_mbit_per_s"] = {
        "mean": round(float(np.mean([e["bitsPerSecond"] for e in rates])) / 1e6, 3),
        "max": round(float(np.max([e["bitsPerSecond"] for e in rates])) / 1e6, 3),
    }
    figures["video_frames_per_s_mean"] = round(float(np.mean([e["framesPerSecond"] for e in rates])), 1)
    figures["video_received_size"] = f"{rates[-1]['width']}x{rates[-1]['height']}"
    figures["reply_window"] = [reply_at, reply_end]
    return Run(figures, state, line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench-agent")
    parser.add_argument("--idle-s", type=float, default=30.0, help="how long the conversation listens, measured")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    repository = ROOT / "model_repository"
    with TritonServer.on_free_ports(repository, log=args.out / "server.log") as server:
        grpc_url = f"127.0.0.1:{server.grpc_port}"
        version = synthetic.TRAINED_VERSION
        LipsyncClient(grpc_url).render(np.zeros(16000, np.float32), 16000, "demo", version)  # loaded
        figures: dict = {"cpu": cpu_name(), "cores": os.cpu_count()}
        figures["conversation"] = run_conversation(grpc_url, repository, args.out, version, args.idle_s).figures
        figures["server_frames_per_s_saturated"] = round(server_frames_per_second(grpc_url, version), 1)
    figures["vp8"] = vp8_cost(repository, [(1280, 720), (960, 540), (640, 360)])
    figures["sessions"] = sessions_estimate(figures)
    (args.out / "report.json").write_text(json.dumps(figures, indent=2))
    (args.out / "report.md").write_text(report(figures))
    print(report(figures))
    return 0


def sessions_estimate(figures: dict) -> dict:
    """Conversations one server holds: its frames/s over 25 x the speaking share, and the agent's
    CPU (encoding every stream, speaking or not) within the machine's cores."""
    served = figures["server_frames_per_s_saturated"]
    per_stream = figures["conversation"]["agent_cpu_per_stream_idle"]
    return {
        f"speaking_{round(share * 100)}pct": {
            "by_server_frames": round(served / (framing.FPS * share), 1),
            "by_agent_cpu": round((os.cpu_count() or 1) / per_stream, 1),
        }
        for share in (0.25, 0.5)
    }


def report(figures: dict) -> str:
    talk = figures["conversation"]
    av = talk["av"]
    lines = [
        f"# bench-agent: {figures['cpu']}, {figures['cores']} cores",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| first frame after the first TTS audio (service) | {talk['first_frame_ms']} ms | <= 300 ms |",
        f"| interruption to the last speaking frame (service) | {talk['interruption_last_speaking_frame_ms']} ms, "
        f"{talk['speaking_frames_after_interruption']} frames | <= 120 ms (3 frames) |",
        f"| interruption to the last open mouth displayed (page) | {talk['interruption_mouth_open_at_page_ms']} ms | |",
        f"| video later than audio at the page, beyond the service's output | {av['skew_ms']} ms "
        f"(video {av['video_delay_ms']}, audio {av['audio_delay_ms']}) | within 40 ms |",
        f"| the same with the audio as the receiver plays it out (synchronization sources) | "
        f"{av['skew_played_ms']} ms (audio {av['played_delay_ms']}) | within 40 ms |",
        f"| the browser's own estimate (estimatedPlayoutTimestamp), video ahead of audio, each second | "
        f"{talk['playoutOffsetsMs']} ms | |",
        f"| the reply's slots shown late (another of its pictures, on the slot's own audio: the voice does "
        f"not wait) | {talk['reply_pictures_late']} of {talk['reply_pictures']} | 0 |",
        f"| network inferences while listening | {talk['idle_inferences_per_min']:.1f} per minute | 0 |",
        f"| video bitrate ({talk['video_received_size']}, {talk['video_frames_per_s_mean']} frames/s) | "
        f"mean {talk['video_mbit_per_s']['mean']}, max {talk['video_mbit_per_s']['max']} Mbit/s | <= 2 Mbit/s |",
        f"| agent process CPU per listening stream | {talk['agent_cpu_per_stream_idle']:.2f} cores | |",
        f"| server frames/s, saturated | {figures['server_frames_per_s_saturated']} | |",
        "",
        "VP8 (aiortc) on the demo's frames: "
        + "; ".join(
            f"{row['size']} {row['cpu_ms_per_frame']} ms/frame, {row['mbit_per_s']} Mbit/s" for row in figures["vp8"]
        ),
        "",
        "Conversations per server: "
        + "; ".join(
            f"{share}: {values['by_server_frames']} by frames, {values['by_agent_cpu']} by the agent's CPU"
            for share, values in figures["sessions"].items()
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
