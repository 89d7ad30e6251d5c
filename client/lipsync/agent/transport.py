"""Pipecat's small WebRTC transport with the avatar's pictures sent on its voice's clock.

The browser lines audio and video up by the RTP timestamps of each track and the wall-clock time
each sender reports for them (RTCP sender reports: aiortc reports the time it sends a packet). So
audio and video play in sync when every picture is stamped and sent at the time the audio played
with it is stamped and sent. pipecat-ai 1.14 does neither: it stamps pictures on aiortc's 30 fps
clock and sends them whenever its video task gets to them.

Here the audio track is the clock. The avatar service marks its pictures sync_with_audio: each
comes through the transport's audio queue right after the audio before it, so when it arrives
its own audio is the next to be written to the track. It is sent when the track sends that
audio, stamped with the same time on the 90 kHz video clock. An interruption empties that queue,
pictures and audio together.
"""

import asyncio
import time

import numpy as np
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE
from av import VideoFrame
from pipecat.frames.frames import OutputImageRawFrame, StartFrame
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import (
    RawAudioTrack,
    RawVideoTrack,
    SmallWebRTCOutputTransport,
    SmallWebRTCTransport,
)


def next_sample(track: RawAudioTrack) -> int:
    """The track sample that audio written now starts at (after what is queued)."""
    return track._timestamp + sum(len(chunk) for chunk, _ in track._chunk_queue) // 2


class VoiceTimedVideoTrack(RawVideoTrack):
    """Sends each picture when `voice` sends a given sample, stamped with that time."""

    def __init__(self, width: int, height: int, voice: RawAudioTrack):
        super().__init__(width, height)
        self.voice = voice
        self.first_sample: int | None = None  # the clock's origin: pipecat's track sent the first picture at 0
        self.last_pts = 0

    def add_picture(self, image: OutputImageRawFrame, sample: int) -> None:
        self._video_buffer.put_nowait((image, sample))

    async def recv(self) -> VideoFrame:
        image, sample = await self._video_buffer.get()
        rate = self.voice._sample_rate
        wait = self.voice._start + sample / rate - time.time()  # the audio track's own schedule
        if wait > 0:
            await asyncio.sleep(wait)
        pixels = np.frombuffer(image.image, np.uint8).reshape(self._height, self._width, 3)
        frame = VideoFrame.from_ndarray(pixels, format="rgb24")
        if self.first_sample is None:
            self.first_sample = sample
        pts = (sample - self.first_sample) * VIDEO_CLOCK_RATE // rate
        self.last_pts = frame.pts = max(pts, self.last_pts + 1)
        frame.time_base = VIDEO_TIME_BASE
        return frame


class AgentOutputTransport(SmallWebRTCOutputTransport):
    """Shows each sync_with_audio picture as it comes out of the audio queue (pipecat-ai 1.14
    keeps such a picture for its non-live video loop, which a live transport does not run)."""

    async def start(self, frame: StartFrame):
        await super().start(frame)
        for sender in self._media_senders.values():
            sender._set_video_image = sender._draw_image  # type: ignore[method-assign,assignment]


class AgentTransport(SmallWebRTCTransport):
    """The small WebRTC transport with audio queued to its track, not awaited, and pictures sent
    on the audio's clock.

    pipecat-ai 1.14 writes each 40 ms of audio only once the track has sent the one before;
    whenever the event loop is late with the next, the track sends 10 ms of silence in its place,
    and every such gap puts the voice 10 ms further behind the picture. The avatar service already
    sends audio at the rate it plays, so queuing it keeps the track a chunk ahead and the voice on
    time; an interruption leaves at most that chunk to play."""

    def __init__(self, connection: SmallWebRTCConnection, params: TransportParams):
        super().__init__(connection, params)
        client = self._client

        async def write_audio_frame(frame) -> bool:
            track = client._audio_output_track
            if track is None or not client._can_send():
                return False
            track.add_audio_bytes(frame.audio)
            return True

        async def write_video_frame(frame) -> bool:
            voice, track = client._audio_output_track, client._video_output_track
            if voice is None or track is None or not client._can_send():
                return False
            if not isinstance(track, VoiceTimedVideoTrack) or track.voice is not voice:
                # The sender may be waiting on pipecat's track: this picture releases it.
                track.add_video_frame(frame)
                track = VoiceTimedVideoTrack(params.video_out_width, params.video_out_height, voice)
                client._video_output_track = track
                connection.replace_video_track(track)
            track.add_picture(frame, next_sample(voice))
            return True

        client.write_audio_frame = write_audio_frame  # type: ignore[method-assign]
        client.write_video_frame = write_video_frame  # type: ignore[method-assign]

    def output(self) -> SmallWebRTCOutputTransport:
        if not self._output:
            self._output = AgentOutputTransport(self._client, self._params, name=self._output_name)
        return self._output
