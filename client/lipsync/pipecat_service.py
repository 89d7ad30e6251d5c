"""The avatar as a Pipecat service: text-to-speech audio in, the avatar's video and the same audio
out, in sync at 25 frames a second (`pip install ./protocol "./client[pipecat]"`).

    from lipsync.pipecat_service import LipsyncAvatarService

    avatar = LipsyncAvatarService("127.0.0.1:8001", "demo")
    pipeline = Pipeline([transport.input(), stt, llm, tts, avatar, transport.output()])

It consumes the TTS service's audio frames (any sample rate, faster than real time) and pushes
OutputImageRawFrame (RGB, scaled to `video_size` if given) and OutputAudioRawFrame (16 kHz mono)
for each frame of a lipsync.conversation.Conversation: the voice plays on at its own rate, and a
picture rendered late is replaced (metadata[METADATA_KEY]["shown"]). An InterruptionFrame (the user
started speaking) drops the reply at once: the avatar idles from the next frame, and no frame or
sample of the reply follows. A reply that cannot be shown (the server refused it, or is gone) is
reported upstream as an ErrorFrame (push_error), as Pipecat's own video services do; the avatar
idles meanwhile. EndFrame and CancelFrame stop it. Every other frame passes through.
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

from lipsync_protocol import framing

from .conversation import Conversation

# Each picture's metadata[METADATA_KEY]: its loop position, whether it shows the reply, and what
# it shows (lipsync.conversation's RENDERED, SUBSTITUTED or HELD), for observers measuring the
# service.
METADATA_KEY = "lipsync"


class LipsyncAvatarService(FrameProcessor):
    def __init__(
        self,
        url: str,
        avatar: str,
        version: int | None = None,
        video_size: tuple[int, int] | None = None,
        sync_with_audio: bool = False,
        **conversation_options,
    ):
        """`video_size`: (width, height) the pictures are scaled to (the transport's video_out
        size; None: the avatar's own). `sync_with_audio`: each picture goes through the
        transport's audio queue, after the audio before it (OutputImageRawFrame.sync_with_audio;
        for a transport that shows such pictures as they come, as lipsync.agent's does: Pipecat's
        own keep them for a non-live video loop). `conversation_options`: Conversation's
        (render_ahead_s, keys, ...)."""
        super().__init__()
        # The server makes the pictures at that size (no larger than the avatar's own).
        self.talk = Conversation(url, avatar, version, frame_size=video_size, **conversation_options)
        self.video_size, self.sync_with_audio = video_size, sync_with_audio
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
            # Decoded on a thread: the event loop also feeds the transport's audio every 10 ms.
            image = OutputImageRawFrame(*await asyncio.to_thread(self._rgb, shown.jpeg), "RGB")
            image.metadata[METADATA_KEY] = {
                "position": shown.position,
                "speaking": shown.speaking,
                "shown": shown.shown,
            }
            image.sync_with_audio = self.sync_with_audio
            await self.push_frame(image)
            pcm = (np.clip(shown.audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
            await self.push_frame(OutputAudioRawFrame(pcm, framing.SAMPLE_RATE, 1))

    def _rgb(self, jpeg: bytes) -> tuple[bytes, tuple[int, int]]:
        with Image.open(io.BytesIO(jpeg)) as picture:
            if self.video_size is not None:
                picture.draft("RGB", self.video_size)  # decodes at 1/2, 1/4 ... where that is still as large
            rgb = picture.convert("RGB")
        if self.video_size is not None and rgb.size != self.video_size:
            rgb = rgb.resize(self.video_size, Image.Resampling.BILINEAR)
        return rgb.tobytes(), rgb.size

    async def _stop(self) -> None:
        if self._playing is not None:
            await self.cancel_task(self._playing)
            self._playing = None
        await self.talk.close()

    async def cleanup(self):
        await super().cleanup()
        await self._stop()
