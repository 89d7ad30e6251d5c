"""What the example agent says, in place of speech recognition and a language model (none runs
offline): the text typed on its page, and, with `echo`, the user's last utterance played back.

Barge-in is real: when Pipecat's voice activity detection hears the user start speaking, the
responder broadcasts an interruption, and the TTS service, the avatar and the transport drop the
reply at once.
"""

from collections import deque

import numpy as np
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    InputTransportMessageFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

# The utterance as VAD confirmed it began late by its start time: keep this much before it.
PREROLL_S = 0.5
MAX_UTTERANCE_S = 30.0
ECHO_CHUNK_S = 0.2  # the echo is pushed like a TTS service's audio: in pieces, ahead of real time


def say_message(message) -> str | None:
    """The text of the page's {"type": "say", "text": ...} message; None for any other."""
    if isinstance(message, dict) and message.get("type") == "say" and isinstance(message.get("text"), str):
        return message["text"].strip() or None
    return None


class Responder(FrameProcessor):
    def __init__(self, echo: bool = False):
        super().__init__()
        self.echo = echo
        self._heard: deque[InputAudioRawFrame] = deque()
        self._heard_s = 0.0
        self._listening = False

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self._hear(frame)
            return  # the user's audio ends here: nothing downstream plays it
        if isinstance(frame, InputTransportMessageFrame) and (text := say_message(frame.message)):
            await self.push_frame(TTSSpeakFrame(text))
            return
        await self.push_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._listening = True
            await self.broadcast_interruption()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._listening = False
            if self.echo and self._heard:
                await self._say_back()

    def _hear(self, frame: InputAudioRawFrame) -> None:
        """Keeps the utterance under way, or the last PREROLL_S while nobody speaks."""
        self._heard.append(frame)
        self._heard_s += frame.num_frames / frame.sample_rate
        keep = MAX_UTTERANCE_S if self._listening else PREROLL_S
        while self._heard and self._heard_s - self._heard[0].num_frames / self._heard[0].sample_rate >= keep:
            dropped = self._heard.popleft()
            self._heard_s -= dropped.num_frames / dropped.sample_rate

    async def _say_back(self) -> None:
        rate, channels = self._heard[0].sample_rate, self._heard[0].num_channels
        pcm = b"".join(frame.audio for frame in self._heard)
        self._heard.clear()
        self._heard_s = 0.0
        samples = np.frombuffer(pcm, "<i2").reshape(-1, channels)[:, 0]
        step = round(ECHO_CHUNK_S * rate)
        await self.push_frame(TTSStartedFrame())
        for begin in range(0, samples.size, step):
            await self.push_frame(TTSAudioRawFrame(samples[begin : begin + step].tobytes(), rate, 1))
        await self.push_frame(TTSStoppedFrame())
