"""A conversation with an avatar: the face of a voice agent, one asyncio session per agent.

    talk = Conversation("127.0.0.1:8001", "demo")
    await talk.start()
    talk.say(tts_samples, 24000)          # any sizes and rates, as fast as the speech is made
    talk.end_of_speech()                  # the reply is complete
    async for frame in talk.frames():     # 25 a second: the JPEG and its 40 ms of audio
        show(frame.jpeg), play(frame.audio)
    talk.interrupt()                      # the user speaks: nothing of the reply after this
    await talk.close()

The avatar's loop position advances by one with every frame shown, speaking or idle, so the face
never jumps. Between replies it is idle: the network's output for silence at each of the avatar's
frames, rendered once per avatar and version (IdleFrames, shared by the sessions open at once) and
shown again on every pass, so a session that only listens costs no inference. A reply starts a few
frames after its first audio arrives (PREROLL_FRAMES, its first frames being rendered meanwhile)
at the position it will be shown at, and is rendered as one stream of lead-in silence, the reply
and trailing silence: its frames are those of render() of that audio (exact segments,
lipsync.streaming), the lead-in gives its first frame the idle face's context and the trail closes
the mouth. Rendering runs at most `render_ahead_s` ahead of what is shown; interrupt() drops what
is queued and cancels what is in flight.
"""

import asyncio
import logging
import math
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from . import framing, streaming
from .client import LipsyncClient, StreamResampler
from .streaming import Segment

log = logging.getLogger(__name__)
FRAME_SAMPLES = framing.SAMPLES_PER_FRAME  # 640: a frame's audio at 16 kHz
# Frames of silence rendered before a reply's first frame: its encoder context (8 vectors, and
# the STFT's half window before them), whole 5-frame blocks so that segments realign.
LEAD_FRAMES = streaming.CONTEXT_FRAMES
# Frames after a reply's last audio that still show it (its encoder context reaches 8 windows on).
CLOSING_FRAMES = framing.CONTEXT + 1
# Frames from a reply's first audio to its first frame on screen: the first segment's time.
PREROLL_FRAMES = 5
IDLE_BLOCK_FRAMES = 25  # idle frames rendered per request
# Idle frames made when the session starts; an avatar of more frames has the rest rendered as the
# loop first reaches them, while no reply is being rendered.
IDLE_PREFILL_FRAMES = 250


@dataclass
class Frame:
    position: int  # in the avatar's loop (framing.pingpong)
    jpeg: bytes
    audio: np.ndarray  # float32 [640] at 16 kHz: what plays while this frame is shown
    speaking: bool
    held: bool = False  # the frame before, shown again (with silence) while this one is late


class IdleFrames:
    """The avatar's face while it listens: for each of its frames, the network's output for
    silence there, each rendered once (when a session starts, or as the loop first reaches it)
    and kept: showing it again costs nothing. Silence makes the same encoder features everywhere,
    so these are the frames a long silence renders at any position (no seam when speech starts or
    stops). The sessions open at once on one server, avatar and version share them (shared())."""

    def __init__(self, client: LipsyncClient, avatar: str, version: int | None):
        self.client, self.avatar, self.version = client, avatar, version
        self.loop_frames = 0  # the avatar's frame count, from the first render
        self.frames: dict[int, bytes] = {}  # avatar frame index -> JPEG
        self.users = 0  # sessions sharing these frames
        self._rendering = threading.Lock()  # sessions that need the same frames render them once

    def index(self, position: int) -> int:
        return framing.pingpong(position, self.loop_frames)

    def ensure(self, first: int, count: int) -> None:
        """Renders the avatar's frames first .. first + count - 1 (clipped) that are missing."""
        with self._rendering:
            missing = [i for i in range(first, min(first + count, self.loop_frames)) if i not in self.frames]
            if not missing:
                return
            start, end = missing[0], missing[-1] + 1
            # Positions loop_period + i show frame i; the segment's first LEAD_FRAMES are context only.
            period = max(1, 2 * self.loop_frames - 2)
            audio = np.zeros(streaming.samples_needed(LEAD_FRAMES + end - start), np.float32)
            part = Segment(0, audio.size, LEAD_FRAMES, end - start, LEAD_FRAMES)
            rate, version = framing.SAMPLE_RATE, self.version
            jpegs = self.client.render(audio, rate, self.avatar, version, period + start, part, 30.0)
            self.frames.update(zip(range(start, end), jpegs))

    def learn_loop(self) -> None:
        """Asks the server for the avatar's frame count (one frame of silence, rendered), once."""
        with self._rendering:
            if self.loop_frames:
                return
            audio = np.zeros(streaming.samples_needed(LEAD_FRAMES + 1), np.float32)
            part = Segment(0, audio.size, LEAD_FRAMES, 1, LEAD_FRAMES)
            _, self.loop_frames = self.client.render_in_loop(
                audio, framing.SAMPLE_RATE, self.avatar, self.version, 0, part, 30.0
            )

    @classmethod
    def shared(cls, url: str, avatar: str, version: int | None, client_options: dict) -> "IdleFrames":
        """The idle frames of the sessions open on this server, avatar and version (and client
        options: keys); new ones if there are none. release() when the session ends: they are
        kept while a session uses them, so a session opened after every other has closed sees a
        version imported since (the latest, where `version` is None)."""
        key = (url, avatar, version, repr(sorted(client_options.items())))
        with _SHARED_LOCK:
            idle = _SHARED.get(key)
            if idle is None:
                idle = _SHARED[key] = cls(LipsyncClient(url, **client_options), avatar, version)
            idle.users += 1
            return idle

    def release(self) -> None:
        with _SHARED_LOCK:
            self.users -= 1
            if self.users > 0:
                return
            for key, idle in list(_SHARED.items()):
                if idle is self:
                    del _SHARED[key]
        self.client.close()


_SHARED: dict[tuple, IdleFrames] = {}
_SHARED_LOCK = threading.Lock()  # sessions may run on several event loops' threads


@dataclass(eq=False)
class Reply:
    """One reply: a stream of lead-in silence, its speech and trailing silence (16 kHz),
    rendered by a client of its own (what interrupt() cancels)."""

    start: int  # the loop position its first shown frame has
    client: LipsyncClient
    audio: np.ndarray = field(default_factory=lambda: np.zeros(LEAD_FRAMES * FRAME_SAMPLES, np.float32))
    last: int | None = None  # the last stream frame shown, once the reply has ended
    failed: BaseException | None = None
    emitted: int = LEAD_FRAMES  # stream frames sent for rendering so far
    frames: dict[int, bytes] = field(default_factory=dict)  # stream frame -> JPEG
    in_flight: int = 0

    @property
    def ended(self) -> bool:
        return self.last is not None

    def end(self) -> None:
        """No more speech: its frames end CLOSING_FRAMES after its audio, and silence follows,
        enough for those frames to be those of a longer silence."""
        speech_frames = math.ceil(self.audio.size / FRAME_SAMPLES) - LEAD_FRAMES
        self.last = LEAD_FRAMES + speech_frames + CLOSING_FRAMES - 1
        missing = streaming.samples_needed(self.last + 1) - self.audio.size
        self.audio = np.concatenate([self.audio, np.zeros(max(0, missing), np.float32)])

    def stream_frame(self, position: int) -> int:
        return LEAD_FRAMES + position - self.start

    def frame_audio(self, index: int) -> np.ndarray:
        chunk = self.audio[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES]
        return np.pad(chunk, (0, FRAME_SAMPLES - chunk.size))


class Conversation:
    def __init__(
        self,
        url: str,
        avatar: str,
        version: int | None = None,
        render_ahead_s: float = 2.0,
        max_in_flight: int = 3,
        segment_frames: int = 25,
        **client_options,
    ):
        """`render_ahead_s`: how far rendering may run ahead of the frame on screen (what an
        interruption throws away at most). `segment_frames`: frames a request renders at most
        (whole seconds keep a CPU server's per-request costs small; the first request is one
        5-frame block whatever this is). `max_in_flight`: requests under way at once, so that the
        server's stages overlap.
        `client_options`: LipsyncClient's (keys, protocol, retries)."""
        self.url, self.avatar, self.version = url, avatar, version
        self.client_options = client_options
        self.render_ahead = round(render_ahead_s * framing.FPS)
        self.max_in_flight, self.segment_frames = max_in_flight, segment_frames
        self.idle = IdleFrames.shared(url, avatar, version, client_options)
        self.position = LEAD_FRAMES  # far enough into the loop that a reply's lead-in has positions too
        self.replies: deque[Reply] = deque()  # the one being shown first, then those queued after it
        self.error: BaseException | None = None  # why the last reply that failed could not be shown
        self.last_shown = b""
        self._resampler: tuple[int, StreamResampler] | None = None
        self._changed = asyncio.Event()
        self._idle_filling = False
        self._tasks: set[asyncio.Task] = set()
        self.closed = False

    async def start(self) -> None:
        """Learns the avatar's loop and renders its idle frames (the first IDLE_PREFILL_FRAMES)
        that no other open session has made."""
        await asyncio.to_thread(self.idle.learn_loop)
        for first in range(0, min(self.idle.loop_frames, IDLE_PREFILL_FRAMES), IDLE_BLOCK_FRAMES):
            await asyncio.to_thread(self.idle.ensure, first, IDLE_BLOCK_FRAMES)

    # Input ------------------------------------------------------------------------------------

    def say(self, samples: np.ndarray, sample_rate: int) -> None:
        """Speech of the current reply (a new one if none is going on), any size and rate."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        if not self.replies or self.replies[-1].ended:
            self._begin_reply()
        if sample_rate != framing.SAMPLE_RATE:
            if self._resampler is None or self._resampler[0] != sample_rate:
                self._resampler = (sample_rate, StreamResampler(sample_rate))
            samples = self._resampler[1].push(samples)
        reply = self.replies[-1]
        reply.audio = np.concatenate([reply.audio, samples])
        self._changed.set()

    def end_of_speech(self) -> None:
        """The reply is complete: its last frames follow, then the avatar idles."""
        if not self.replies or self.replies[-1].ended:
            return
        reply = self.replies[-1]
        if self._resampler is not None:
            reply.audio = np.concatenate([reply.audio, self._resampler[1].push(None)])
            self._resampler = None
        reply.end()
        self._changed.set()

    def interrupt(self) -> None:
        """Drops every reply: no frame or sample of them is shown after this, the avatar idles
        from the next frame on, and their segments in flight are cancelled on the server."""
        while self.replies:
            self._drop(self.replies.popleft())
        self._resampler = None
        self._changed.set()

    @property
    def speaking(self) -> bool:
        return bool(self.replies) and self.position >= self.replies[0].start

    @property
    def ahead_s(self) -> float:
        """Seconds of speech taken in and not yet shown (what a caller bounds its input by)."""
        frames = sum(max(0.0, reply.audio.size / FRAME_SAMPLES - LEAD_FRAMES) for reply in self.replies)
        if self.replies:  # the lead-in is never shown
            frames -= min(max(0, self.replies[0].stream_frame(self.position) - LEAD_FRAMES), frames)
        return frames / framing.FPS

    def _begin_reply(self) -> None:
        start = self.position + PREROLL_FRAMES
        if self.replies:  # after the one queued before it, which has ended
            before = self.replies[-1]
            assert before.last is not None
            start = max(start, before.start + before.last - LEAD_FRAMES + 1)
        reply = Reply(start, LipsyncClient(self.url, **self.client_options))
        self.replies.append(reply)
        self._spawn(self._render(reply))

    def _fail(self, reply: Reply, error: BaseException) -> None:
        if reply in self.replies:
            reply.failed = self.error = error
            log.warning("a reply cannot be shown, the avatar idles: %s", error)
        self._changed.set()

    def _drop(self, reply: Reply) -> None:
        reply.client.cancel()
        reply.frames.clear()

    # Rendering --------------------------------------------------------------------------------

    async def _render(self, reply: Reply) -> None:
        """Sends the reply's segments as its audio makes frames exact, within the render-ahead
        bound and `max_in_flight`; ends when every frame it shows is sent or it is dropped."""
        try:
            await self._send_segments(reply)
        except Exception as error:  # the reply cannot be shown: the avatar idles, never freezes
            self._fail(reply, error)

    async def _send_segments(self, reply: Reply) -> None:
        while reply in self.replies and reply.failed is None:
            received = reply.audio.size
            ready = streaming.ready_frames(received)
            known = ready if reply.last is None else min(ready, reply.last + 1)
            limit = min(known, reply.stream_frame(self.position) + self.render_ahead)
            # Held back by render-ahead alone, it waits for room for a whole segment rather than
            # sending a frame a request as each frame is shown (a request's cost on a CPU server).
            room_needed = 1 if limit == known else max(1, min(self.segment_frames, self.render_ahead // 2))
            if limit - reply.emitted >= room_needed and reply.in_flight < self.max_in_flight:
                # The first segment is one block: the reply's first frame is what keeps it waiting.
                size = streaming.BLOCK_FRAMES if reply.emitted == LEAD_FRAMES else self.segment_frames
                upto = min(limit, reply.emitted + size)
                part = streaming.segment(reply.emitted, upto, received)
                audio = reply.audio[part.begin : part.end]
                reply.emitted, reply.in_flight = upto, reply.in_flight + 1
                self._spawn(self._render_segment(reply, audio, part))
                continue
            if reply.last is not None and reply.emitted > reply.last:
                return
            self._changed.clear()
            await self._changed.wait()

    async def _render_segment(self, reply: Reply, audio: np.ndarray, part: Segment) -> None:
        client = reply.client
        try:
            jpegs = await asyncio.to_thread(
                client._segment, client.render, audio, self.avatar, self.version, reply.start - LEAD_FRAMES, part, None
            )
            if len(jpegs) != part.count:
                raise RuntimeError(f"the server returned {len(jpegs)} of the segment's {part.count} frames")
            if reply in self.replies:
                reply.frames.update(zip(range(part.stream_frame, part.stream_frame + part.count), jpegs))
        except Exception as error:  # cancelled by interrupt(), or a reply that cannot be shown
            self._fail(reply, error)
        finally:
            reply.in_flight -= 1
            self._changed.set()

    # Output -----------------------------------------------------------------------------------

    async def frames(self, realtime: bool = True) -> AsyncIterator[Frame]:
        """The frames to show, 25 a second (`realtime`), or each as soon as it is known (tests,
        files). A frame not rendered when its time comes is shown late, the one before it held
        meanwhile with silence: audio and video never part."""
        loop = asyncio.get_running_loop()
        started, shown = loop.time(), 0
        while True:
            if realtime:  # the slot first, then its frame: what interrupt() dropped is not shown
                await asyncio.sleep(max(0.0, started + shown / framing.FPS - loop.time()))
            frame = await self._next_frame(wait=not realtime)
            if frame is None:  # late: hold the last frame, with silence
                frame = Frame(self.position, self.last_shown, np.zeros(FRAME_SAMPLES, np.float32), self.speaking, True)
            else:
                self.last_shown = frame.jpeg
                self.position += 1
                self._changed.set()  # the render-ahead bound moves with the position
            shown += 1
            yield frame

    async def _next_frame(self, wait: bool) -> Frame | None:
        """The frame at the current position; None if it is not rendered yet (`wait`: once it is)."""
        while True:
            reply = self.replies[0] if self.replies else None
            if reply is not None and self.position >= reply.start:
                index = reply.stream_frame(self.position)
                if reply.failed is not None or (reply.last is not None and index > reply.last):
                    self._drop(self.replies.popleft())  # over, or it cannot be shown: idle from here
                    continue
                if index in reply.frames:
                    return Frame(self.position, reply.frames.pop(index), reply.frame_audio(index), True)
            else:
                self._prefetch_idle()
                idle = self.idle.frames.get(self.idle.index(self.position))
                if idle is not None:
                    return Frame(self.position, idle, np.zeros(FRAME_SAMPLES, np.float32), False)
            if not wait:
                return None
            self._changed.clear()
            await self._changed.wait()

    def _prefetch_idle(self) -> None:
        """Renders the idle frames the loop reaches next, once, a block ahead."""
        upcoming = {self.idle.index(self.position + k) for k in range(IDLE_BLOCK_FRAMES)} - self.idle.frames.keys()
        if not upcoming or self._idle_filling or self.replies:  # a reply's frames come first
            return
        self._idle_filling = True

        async def fill():
            try:
                for first in sorted(upcoming):
                    await asyncio.to_thread(self.idle.ensure, first, IDLE_BLOCK_FRAMES)
            finally:
                self._idle_filling = False
                self._changed.set()

        self._spawn(fill())

    def _spawn(self, work) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stops rendering and closes the connections; the session is over."""
        if self.closed:
            return
        self.closed = True
        self.interrupt()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.idle.release()
