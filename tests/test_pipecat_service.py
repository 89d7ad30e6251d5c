"""The avatar as a Pipecat service (lipsync.pipecat_service) in a real Pipecat pipeline (no
transport) against the real server: text-to-speech audio in, frames and the same audio out in
sync, and an interruption that leaves nothing of the reply after it. Each test waits for the
frames it needs, not for a time."""

import asyncio
import math
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from lipsync.conversation import FRAME_SAMPLES
from lipsync.pipecat_service import LipsyncAvatarService
from lipsync_protocol import framing

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "perf"))
from agent import tts_frames  # noqa: E402  (the bench's: 16 kHz speech as a 24 kHz TTS sends it)

pytestmark = pytest.mark.integration
LIMIT_S = 300  # a guard against a hang: each test ends on the frames it waits for


def played(frames) -> tuple[list[OutputImageRawFrame], list[np.ndarray]]:
    """The service's pictures and sounds, in the order pushed."""
    images = [f for f in frames if isinstance(f, OutputImageRawFrame)]
    sounds = [np.frombuffer(f.audio, "<i2") for f in frames if type(f) is OutputAudioRawFrame]  # not the TTS's
    return images, sounds


class Recorder(FrameProcessor):
    """The pipeline's end: keeps what reaches it, and says when the frames so far satisfy a test."""

    def __init__(self):
        super().__init__()
        self.frames: list[Frame] = []
        self.waiting: tuple[Callable[[list[Frame]], bool], asyncio.Event] | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        self.frames.append(frame)
        if self.waiting and self.waiting[0](self.frames):
            self.waiting[1].set()
        await self.push_frame(frame, direction)

    async def until(self, condition: Callable[[list[Frame]], bool]) -> None:
        self.waiting = (condition, asyncio.Event())
        if not condition(self.frames):
            await self.waiting[1].wait()


async def converse(grpc_url: str, script: Callable[[PipelineWorker, Recorder], Awaitable[None]]) -> list[Frame]:
    """Runs the service in a Pipecat pipeline (run_pipeline)."""
    return await run_pipeline([LipsyncAvatarService(grpc_url, "demo")], script)


async def run_pipeline(
    processors: list[FrameProcessor], script: Callable[[PipelineWorker, Recorder], Awaitable[None]]
) -> list[Frame]:
    """Runs `processors` in a Pipecat pipeline, the script queueing frames and waiting for what
    comes out; then ends the pipeline and returns every frame that reached its end."""
    recorder = Recorder()
    worker = PipelineWorker(Pipeline([*processors, recorder]), cancel_on_idle_timeout=False, enable_rtvi=False)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def on_started(worker, frame):
        started.set()

    async def drive():
        await started.wait()
        try:
            await script(worker, recorder)
        except BaseException:  # the pipeline is cancelled, and the failure is the test's
            await runner.cancel()
            raise
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner()
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), drive()), LIMIT_S)
    return recorder.frames


def speaking(frames) -> int:
    return sum(bool(s.any()) for s in played(frames)[1])


def test_a_reply_is_shown_in_sync_then_the_avatar_idles(grpc_url, speech):
    audio = speech[0][: 3 * framing.SAMPLE_RATE // 2]
    frames_of_speech = math.ceil(audio.size / FRAME_SAMPLES)

    async def reply(worker, recorder):
        await worker.queue_frames([TTSStartedFrame(), *tts_frames(audio), TTSStoppedFrame()])
        # Until the reply has played out and the avatar has been idle for a second.
        await recorder.until(lambda frames: speaking(frames) >= frames_of_speech - 1)
        shown = len(played(recorder.frames)[0])
        await recorder.until(lambda frames: len(played(frames)[0]) >= shown + framing.FPS)

    images, sounds = played(asyncio.run(converse(grpc_url, reply)))
    assert len(images) == len(sounds)  # a picture and its 40 ms, every frame
    assert all(i.size == (1280, 720) and len(i.image) == 1280 * 720 * 3 for i in images)
    assert all(s.size == FRAME_SAMPLES for s in sounds)
    assert not sounds[0].any() and not sounds[-1].any()  # silence, the reply, silence
    # The reply's audio, resampled to 24 kHz and back, plays out whole and in order (up to the
    # resamplers' few samples of delay); a frame rendered late is preceded by held silent frames.
    heard = np.concatenate([s for s in sounds if s.any()]).astype(np.float32) / 32768.0
    match = max(np.corrcoef(heard[lag : lag + audio.size - 64], audio[: audio.size - 64])[0, 1] for lag in range(64))
    assert heard.size >= audio.size - 64 and match > 0.95


def test_an_interruption_stops_the_reply_within_a_frame(grpc_url, speech):
    audio = speech[0][: 4 * framing.SAMPLE_RATE]

    async def interrupted(worker, recorder):
        await worker.queue_frames([TTSStartedFrame(), *tts_frames(audio)])
        await recorder.until(lambda frames: speaking(frames) >= 10)  # it is speaking
        await worker.queue_frame(InterruptionFrame())  # the user speaks
        await recorder.until(lambda frames: any(isinstance(f, InterruptionFrame) for f in frames))
        cut = len(played(recorder.frames)[0])
        await recorder.until(lambda frames: len(played(frames)[0]) >= cut + framing.FPS)

    frames = asyncio.run(converse(grpc_url, interrupted))
    cut = next(k for k, f in enumerate(frames) if isinstance(f, InterruptionFrame))
    _, after = played(frames[cut:])
    assert len(after) >= framing.FPS
    assert sum(bool(s.any()) for s in after) <= 1  # at most the frame already on its way
