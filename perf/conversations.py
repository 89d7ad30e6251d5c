"""`make bench-conversations`: how one conversation plays a reply, and how many conversations one
server keeps, as their listeners hear and see them.

Starts the server (CPU profile, loopback, the trained demo). First one conversation on the idle
server plays one 8.8 s espeak-ng reply fed at 4x real time, at real time and all at once, and
is interrupted 3 s into another (the issue's targets). Then for N = 1, 2, 3 ... it runs N
conversations for --seconds each: N Pipecat pipelines, each the avatar service
(lipsync.pipecat_service, 640x360 like the example agent) and a sink, all in this process, no
browser. Each conversation alternates a 6 s espeak-ng reply, fed as a TTS service sends it (24 kHz,
20 ms frames) at 4x real time, with 6 s of listening; their starts are offset by seeded random
phases, so replies overlap as chance has them.

Per N, from what each service pushed (pictures with their metadata, and their 40 ms of audio):
- voice stretch per reply: its first to last audible output sample, less the same in its input;
- late slots: the reply's slots whose picture was not rendered for them (metadata "shown");
- first frame: from the reply's first TTS audio handed over to its first rendered picture;
- audio against video on the on-time slots: the lag (in slots) at which the mouth's darkness
  (a box over the demo's mouth) best follows the audio's loudness;
- busy refusals (the server's lipsync_requests_refused_total), the server's per-step costs
  (Triton's statistics) and the CPU of this process and of the server.
max_conversations is the largest N with no voice stretch over 40 ms and at most 1 % late slots.
Writes out/bench-conversations/report.json and report.md.
"""

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import psutil
from pipecat.frames.frames import (
    EndFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from lipsync.client import LipsyncClient
from lipsync.conversation import RENDERED, SUBSTITUTED
from lipsync.pipecat_service import METADATA_KEY, LipsyncAvatarService
from lipsync_protocol import framing
from lipsync_server.launcher import processes
from lipsync_server.launcher.tritonserver import TritonServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402
from agent import DARK_LEVEL, probe_box  # noqa: E402  (the demo's mouth, as bench-agent reads it)

ROOT = Path(__file__).resolve().parents[1]
VIDEO_SIZE = (640, 360)
TTS_RATE = 24_000
REPLY_S = 6.0
LISTEN_S = 6.0
FEED_SPEED = 4.0
MAX_STRETCH_S = 0.040
MAX_LATE = 0.01
ONE_REPLY = (
    "Hello there. I am the face of this voice agent. When the server is idle, my voice should never stutter, "
    "and my lips should follow every word I say."
)
ONE_REPLY_SPEEDS = {"4x real time": 4.0, "real time": 1.0, "all at once": 0.0}
INTERRUPT_AFTER_S = 3.0
SENTENCES = [
    "Thanks for asking. The order left our warehouse this morning and should reach you by Friday.",
    "I can help with that. Your account is active, and the next payment is due on the first.",
    "Good question. The museum opens at nine, and the guided tour starts every hour on the hour.",
    "Sure. The train to the airport leaves from platform four, every twenty minutes until midnight.",
]


def espeak_reply(text: str, path: Path, seconds: float | None = REPLY_S) -> np.ndarray:
    """`text` spoken by espeak-ng (written to `path`), resampled to TTS_RATE 16-bit, padded or
    cut to `seconds` (None: as long as it is)."""
    subprocess.run(["espeak-ng", "-w", str(path), "-s", "150", "--", text], check=True)
    with wave.open(str(path)) as source:
        rate, pcm = source.getframerate(), np.frombuffer(source.readframes(source.getnframes()), "<i2")
    resampler = av.AudioResampler(format="s16", layout="mono", rate=TTS_RATE)
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    out = np.concatenate([f.to_ndarray().reshape(-1) for f in [*resampler.resample(frame), *resampler.resample(None)]])
    if seconds is None:
        return out.astype("<i2")
    length = int(seconds * TTS_RATE)
    return np.pad(out[:length], (0, max(0, length - out.size))).astype("<i2")


def audible_span_s(samples: np.ndarray, rate: int) -> float:
    voiced = np.flatnonzero(np.abs(samples.astype(np.int32)) > 64)  # above the resamplers' dither
    return (voiced[-1] - voiced[0]) / rate if voiced.size else 0.0


@dataclass
class Slot:
    at: float
    speaking: bool
    shown: str
    dark: int
    audio: np.ndarray | None = None


class Listener(FrameProcessor):
    """A conversation's end: keeps each slot the service pushed (its picture's metadata and mouth,
    and its audio)."""

    def __init__(self, probe: tuple[int, int, int, int]):
        super().__init__()
        self.probe = probe
        self.slots: list[Slot] = []

    async def process_frame(self, frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, OutputImageRawFrame) and METADATA_KEY in frame.metadata:
            shown, (width, height) = frame.metadata[METADATA_KEY], frame.size
            x, y, w, h = self.probe
            pixels = np.frombuffer(frame.image, np.uint8).reshape(height, width, 3)[y : y + h, x : x + w]
            dark = int((pixels.max(axis=2) < DARK_LEVEL).sum())
            self.slots.append(Slot(time.monotonic(), shown["speaking"], shown["shown"], dark))
        elif type(frame) is OutputAudioRawFrame and self.slots and self.slots[-1].audio is None:
            self.slots[-1].audio = np.frombuffer(frame.audio, "<i2")
        await self.push_frame(frame, direction)


@dataclass
class Conversation:
    listener: Listener
    worker: PipelineWorker
    replies: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (first audio handed over, the reply)


async def converse(url: str, count: int, seconds: float, replies: list[np.ndarray], probe, seed: int):
    """Runs `count` conversations for `seconds`; returns them with what each listener got."""
    rng = random.Random(seed)
    cycle = REPLY_S + LISTEN_S
    talks = []
    for _ in range(count):
        listener = Listener(probe)
        service = LipsyncAvatarService(url, "demo", video_size=VIDEO_SIZE)
        talks.append(Conversation(listener, PipelineWorker(Pipeline([service, listener]), enable_rtvi=False)))
    runner = WorkerRunner()
    await runner.add_workers(*(talk.worker for talk in talks))

    async def speak(talk: Conversation, phase: float, began: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(phase)
        turn = 0
        while loop.time() + REPLY_S < began + seconds:
            await feed(talk, replies[rng.randrange(len(replies))], FEED_SPEED)
            turn += 1
            await asyncio.sleep(max(0.0, began + phase + turn * cycle - loop.time()))

    async def drive() -> None:
        await asyncio.sleep(0.5)
        while not all(talk.listener.slots for talk in talks):  # every session has started
            await asyncio.sleep(0.1)
        began = asyncio.get_running_loop().time()
        await asyncio.gather(*(speak(talk, rng.uniform(0, cycle), began) for talk in talks))
        await asyncio.sleep(3.0)  # the last replies play out
        for talk in talks:
            await talk.worker.queue_frame(EndFrame())

    await asyncio.gather(runner.run(), drive())
    return talks


async def feed(talk: Conversation, reply: np.ndarray, speed: float) -> None:
    """`reply` as a TTS service sends it: 20 ms frames at `speed` x real time (0: all at once)."""
    loop = asyncio.get_running_loop()
    await talk.worker.queue_frame(TTSStartedFrame())
    fed = loop.time()
    talk.replies.append((time.monotonic(), reply))
    step = TTS_RATE // 50
    for k, at in enumerate(range(0, reply.size, step)):
        await talk.worker.queue_frame(TTSAudioRawFrame(reply[at : at + step].tobytes(), TTS_RATE, 1))
        if speed:
            await asyncio.sleep(max(0.0, fed + (k + 1) * 0.02 / speed - loop.time()))
    await talk.worker.queue_frame(TTSStoppedFrame())


async def one_reply(url: str, reply: np.ndarray, speed: float, probe, interrupt: bool) -> tuple[dict, float | None]:
    """One conversation plays `reply` fed at `speed` (`interrupt`: cut INTERRUPT_AFTER_S into it).
    Returns the reply's figures, and the seconds from the interruption to its last picture."""
    listener = Listener(probe)
    service = LipsyncAvatarService(url, "demo", video_size=VIDEO_SIZE)
    talk = Conversation(listener, PipelineWorker(Pipeline([service, listener]), enable_rtvi=False))
    runner = WorkerRunner()
    await runner.add_workers(talk.worker)

    async def drive() -> float | None:
        while not listener.slots:  # the session has started
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        await feed(talk, reply, speed)
        cut = None
        if interrupt:
            while sum(slot.speaking for slot in listener.slots) < INTERRUPT_AFTER_S * framing.FPS:
                await asyncio.sleep(0.005)
            cut = time.monotonic()
            await talk.worker.queue_frame(InterruptionFrame())
        await asyncio.sleep(reply.size / TTS_RATE + 2.0)
        await talk.worker.queue_frame(EndFrame())
        return cut

    _, cut = await asyncio.gather(runner.run(), drive())
    figures = reply_figures(talk)
    if cut is None:
        return figures[0], None
    last = max(slot.at for slot in listener.slots if slot.speaking)
    return figures[0], max(0.0, last - cut)


def reply_figures(talk: Conversation) -> list[dict]:
    """Per reply: its slots (the run of speaking slots after its first audio), late ones, voice
    stretch, first frame and the on-time slots' mouth and loudness."""
    slots = talk.listener.slots
    figures = []
    for handed, reply in talk.replies:
        run, started = [], False
        for slot in slots:
            if slot.at < handed:
                continue
            if slot.speaking:
                started = True
                run.append(slot)
            elif started:
                break
        if not run or not started:
            continue
        heard = np.concatenate([s.audio for s in run if s.audio is not None])
        first = next((s.at for s in run if s.shown == RENDERED), None)
        figures.append(
            {
                "slots": len(run),
                "late": sum(s.shown == SUBSTITUTED for s in run),
                "voice_stretch_s": audible_span_s(heard, framing.SAMPLE_RATE) - audible_span_s(reply, TTS_RATE),
                "first_frame_s": None if first is None else first - handed,
                "on_time": [(s.dark, loudness(s.audio)) for s in run if s.shown == RENDERED and s.audio is not None],
            }
        )
    return figures


def loudness(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean((audio / 32768.0) ** 2)))


def sync_lag_slots(on_time: list[tuple[int, float]]) -> int | None:
    """The lag (slots; positive: the mouth after the sound) at which the mouth's darkness best
    follows the loudness."""
    if len(on_time) < 50:
        return None
    dark, loud = (np.array(v, np.float64) for v in zip(*on_time))

    def follows(lag: int) -> float:
        sound = loud[max(0, -lag) : len(loud) - max(0, lag)]
        return float(np.corrcoef(sound, dark[max(0, lag) : len(dark) - max(0, -lag)])[0, 1])

    return max(range(-3, 4), key=follows)


def cpu_seconds(processes_: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes_:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def run_level(server: TritonServer, url: str, count: int, args, replies, probe) -> dict:
    client = LipsyncClient(url)
    busy_before = server.metrics().total("lipsync_requests_refused_total", reason="busy")
    stats_before = client.statistics()
    server_tree, ours = processes.tree(server.running.pid), psutil.Process()
    server_cpu, our_cpu, started = cpu_seconds(server_tree), cpu_seconds([ours]), time.monotonic()
    talks = asyncio.run(converse(url, count, args.seconds, replies, probe, args.seed + count))
    wall = time.monotonic() - started
    server_cpu, our_cpu = cpu_seconds(server_tree) - server_cpu, cpu_seconds([ours]) - our_cpu
    figures = [f for talk in talks for f in reply_figures(talk)]
    slots = sum(f["slots"] for f in figures)
    late = sum(f["late"] for f in figures)
    firsts = [f["first_frame_s"] for f in figures if f["first_frame_s"] is not None]
    stretches = [f["voice_stretch_s"] for f in figures]
    lag = sync_lag_slots([pair for f in figures for pair in f["on_time"]])
    frames = sum(s["inferences"] for k, s in client.statistics().items() if k.startswith("avatar_demo/")) - sum(
        s["inferences"] for k, s in stats_before.items() if k.startswith("avatar_demo/")
    )
    level = {
        "conversations": count,
        "replies": len(figures),
        "slots": slots,
        "late_slots": late,
        "late_share": late / slots if slots else 0.0,
        "voice_stretch_s": {"max": max(stretches, default=0.0), "min": min(stretches, default=0.0)},
        "first_frame_s": {"p50": measure.percentile(firsts, 50), "p95": measure.percentile(firsts, 95)},
        "sync_lag_ms": None if lag is None else lag * 1000 / framing.FPS,
        "busy_refusals": server.metrics().total("lipsync_requests_refused_total", reason="busy") - busy_before,
        "steps": measure.step_costs(stats_before, client.statistics(), max(frames, 1)),
        "cpu_cores": {"server": server_cpu / wall, "conversations": our_cpu / wall},
    }
    level["keeps_up"] = level["voice_stretch_s"]["max"] <= MAX_STRETCH_S and level["late_share"] <= MAX_LATE
    print(
        f"N={count}: {len(figures)} replies, late {100 * level['late_share']:.1f}%, stretch max "
        f"{1000 * level['voice_stretch_s']['max']:.0f} ms, first frame p50 {level['first_frame_s']['p50']:.2f} s, "
        f"busy refusals {level['busy_refusals']:.0f}",
        flush=True,
    )
    return level


COLUMNS = " | ".join(
    [
        "| conversations",
        "replies",
        "late slots",
        "voice stretch max (ms)",
        "first frame p50 / p95 (s)",
        "audio-video lag of on-time slots (ms)",
        "busy refusals",
        "CPU cores server / conversations",
        "keeps up |",
    ]
)


def row(level: dict) -> str:
    late = f"{100 * level['late_share']:.2f}% ({level['late_slots']} of {level['slots']})"
    first = f"{level['first_frame_s']['p50']:.2f} / {level['first_frame_s']['p95']:.2f}"
    lag = "-" if level["sync_lag_ms"] is None else f"{level['sync_lag_ms']:.0f}"
    cores = f"{level['cpu_cores']['server']:.2f} / {level['cpu_cores']['conversations']:.2f}"
    stretch = f"{1000 * level['voice_stretch_s']['max']:.0f}"
    return (
        f"| {level['conversations']} | {level['replies']} | {late} | {stretch} | {first} | {lag} | "
        f"{level['busy_refusals']:.0f} | {cores} | {'yes' if level['keeps_up'] else 'no'} |"
    )


def one_reply_rows(one: dict) -> str:
    rows = []
    for name, f in one["feeds"].items():
        first = "-" if f["first_frame_s"] is None else f"{1000 * f['first_frame_s']:.0f}"
        rows.append(
            f"| fed {name} | {1000 * f['voice_stretch_s']:.0f} | {f['late']} of {f['slots']} | {first} | "
            f"{f['busy_refusals']:.0f} |"
        )
    return "\n".join(rows)


def markdown(report: dict) -> str:
    rows = "\n".join(row(level) for level in report["levels"])
    first = report["levels"][0]["steps"]
    steps = "\n".join(
        f"| {model} | {cost['queue_ms_per_frame']:.2f} | {cost['compute_ms_per_frame']:.2f} |"
        for model, cost in first.items()
    )
    cpu = report["cpu"]
    return f"""# Conversations on one server

CPU: {cpu["model"]}, {cpu["cores"]} cores ({", ".join(cpu["isa"])}). {report["seconds"]:.0f} s per level; each
conversation alternates a {REPLY_S:.0f} s espeak-ng reply fed at {FEED_SPEED:.0f}x real time with {LISTEN_S:.0f} s of
listening, pictures at {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}.

One conversation on the idle server, one {report["one_reply"]["reply_s"]:.1f} s reply:

| reply | voice stretch (ms) | late slots | first frame (ms) | busy refusals |
| --- | --- | --- | --- | --- |
{one_reply_rows(report["one_reply"])}

Interrupted {INTERRUPT_AFTER_S:.0f} s into the reply (fed at {FEED_SPEED:.0f}x): its last picture
{1000 * (report["one_reply"]["interruption_s"] or 0):.0f} ms after the InterruptionFrame.

**max_conversations: {report["max_conversations"]}** (no voice stretch over {1000 * MAX_STRETCH_S:.0f} ms and at most
{100 * MAX_LATE:.0f} % late slots).

{COLUMNS}
{"| --- " * (COLUMNS.count("|") - 1)}|
{rows}

Server steps with one conversation (Triton's statistics; face_generator's compute holds the UNet's
and the compositor's calls):

| model | queue ms/frame | compute ms/frame |
| --- | --- | --- |
{steps}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="per level")
    parser.add_argument("--max-conversations", type=int, default=4, help="the largest N tried")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "bench-conversations")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is not installed: make tools")
    args.output.mkdir(parents=True, exist_ok=True)
    replies = [espeak_reply(text, args.output / f"reply{k}.wav") for k, text in enumerate(SENTENCES)]
    probe = probe_box(ROOT / "model_repository", VIDEO_SIZE)
    single = espeak_reply(ONE_REPLY, args.output / "one-reply.wav", seconds=None)
    levels = []
    with TritonServer.on_free_ports(ROOT / "model_repository", log=args.output / "server.log") as server:
        url = f"127.0.0.1:{server.grpc_port}"
        one = {}
        for name, speed in ONE_REPLY_SPEEDS.items():
            busy = server.metrics().total("lipsync_requests_refused_total", reason="busy")
            figures, _ = asyncio.run(one_reply(url, single, speed, probe, interrupt=False))
            figures.pop("on_time")
            figures["busy_refusals"] = server.metrics().total("lipsync_requests_refused_total", reason="busy") - busy
            one[name] = figures
            print(f"one reply, {name}: {figures}", flush=True)
        _, interruption = asyncio.run(one_reply(url, single, FEED_SPEED, probe, interrupt=True))
        for count in range(1, args.max_conversations + 1):
            levels.append(run_level(server, url, count, args, replies, probe))
            if not levels[-1]["keeps_up"] and count > 1:
                break
    kept = [lv["conversations"] for lv in levels if lv["keeps_up"]]
    report = {
        "cpu": measure.cpu(),
        "one_reply": {"reply_s": single.size / TTS_RATE, "feeds": one, "interruption_s": interruption},
        "seconds": args.seconds,
        "levels": levels,
        "max_conversations": max(kept, default=0),
    }
    (args.output / "report.json").write_text(json.dumps(report, indent=1))
    (args.output / "report.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
