"""The avatar as a Pipecat service: text-to-speech audio in, the avatar's video and the same audio
out, in sync at 25 frames a second (`pip install "./client[pipecat]"`).

    from lipsync.pipecat_service import LipsyncAvatarService

    avatar = LipsyncAvatarService("127.0.0.1:8001", "demo")
    pipeline = Pipeline([transport.input(), stt, llm, tts, avatar, transport.output()])

It consumes the TTS service's audio frames (any sample rate, faster than real time) and pushes
OutputImageRawFrame (RGB) and OutputAudioRawFrame (16 kHz mono) for each frame of a
lipsync.conversation.Conversation. An InterruptionFrame (the user started speaking) drops the
reply at once: the avatar idles from the next frame, and no frame or sample of the reply follows.
EndFrame and CancelFrame stop it. Every other frame passes through.
"""

import asyncio
import io

import numpy as np
from PIL import Image
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from . import framing
from .conversation import Conversation


class LipsyncAvatarService(FrameProcessor):
    def __init__(self, url: str, avatar: str, version: int | None = None, **conversation_options):
        """`conversation_options`: Conversation's (render_ahead_s, keys, ...)."""
        super().__init__()
        self.talk = Conversation(url, avatar, version, **conversation_options)
        self._playing: asyncio.Task | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):  # taken in; played out with its frames
            samples = np.frombuffer(frame.audio, "<i2").reshape(-1, frame.num_channels).mean(axis=1)
            self.talk.say(samples.astype(np.float32) / 32768.0, frame.sample_rate)
            return
        if isinstance(frame, TTSStoppedFrame):
            self.talk.end_of_speech()
        elif isinstance(frame, InterruptionFrame):
            self.talk.interrupt()
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.talk.start()
            self._playing = self.create_task(self._play(), "lipsync playout")
        elif isinstance(frame, (EndFrame, CancelFrame)):
            await self._stop()

    async def _play(self) -> None:
        async for shown in self.talk.frames():
            with Image.open(io.BytesIO(shown.jpeg)) as picture:
                rgb = picture.convert("RGB")
            await self.push_frame(OutputImageRawFrame(rgb.tobytes(), rgb.size, "RGB"))
            pcm = (np.clip(shown.audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
            await self.push_frame(OutputAudioRawFrame(pcm, framing.SAMPLE_RATE, 1))

    async def _stop(self) -> None:
        if self._playing is not None:
            await self.cancel_task(self._playing)
            self._playing = None
        await self.talk.close()

    async def cleanup(self):
        await super().cleanup()
        await self._stop()
