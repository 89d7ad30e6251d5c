"""A conversation with an avatar: the face of a voice agent, one asyncio session per agent.

    talk = Conversation("127.0.0.1:8001", "demo")
    await talk.start()
    talk.say(tts_samples, 24000)          # any sizes and rates, as fast as the speech is made
    talk.end_of_speech()                  # the reply is complete
    async for frame in talk.frames():     # 25 a second: the JPEG and its 40 ms of audio
        show(frame.jpeg), play(frame.audio)
    talk.interrupt()                      # the user speaks: nothing of the reply after this
    await talk.close()

The voice is the clock. Once a reply starts, its audio plays at its own rate, 40 ms a slot, with
no silence put in whatever the server does: a slot whose picture is not rendered in time shows the
nearest picture of the reply that is (or the one before) and counts as late, and a picture that
comes after its slot is never shown. Only audio the text-to-speech has not sent yet holds a reply
(the picture before, with silence: Frame.shown HELD).

A reply starts as a video player does after buffering: at the earliest slot from which, at the
pace this session measures the server rendering for it (lipsync.pace), every later slot will be
on time, and never more than MAX_START_S after its first audio. It is rendered as one stream of
lead-in silence, the reply and trailing silence: its frames are those of render() of that audio
(exact segments, lipsync.streaming), the lead-in gives its first frame the idle face's context and
the trail closes the mouth. Its segments grow from 3 frames to a second's frames, so that its
first frame comes one small request after its audio; each carries its deadline
(MAX_WAIT_MS: until its first slot), so the server renders it in time or refuses it at once,
and then its slots are late.

The avatar's loop position advances by one with every slot, speaking or idle, so the face never
jumps. Between replies it is idle: the network's output for silence at each of the avatar's
frames, rendered once per avatar and version (IdleFrames, shared by the sessions open at once) and
shown again on every pass, so a session that only listens costs no inference. Rendering runs at
most `render_ahead_s` ahead of what is shown; interrupt() drops what is queued and cancels what is
in flight.
"""

import asyncio
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
from tritonclient.utils import InferenceServerException

from lipsync_protocol import framing

from . import streaming
from .client import LipsyncClient
from .idle_frames import IdleFrames
from .render_request import RenderRequest
from .resampling import StreamResampler
from .streaming import Segment
from .transport import Cancelled

log = logging.getLogger(__name__)
FRAME_SAMPLES = framing.SAMPLES_PER_FRAME  # 640: a frame's audio at 16 kHz
# Frames of silence rendered before a reply's first frame: its encoder context (8 vectors, and
# the STFT's half window before them), whole 5-frame blocks so that segments realign.
LEAD_FRAMES = streaming.CONTEXT_FRAMES
# Frames after a reply's last audio that still show it (its encoder context reaches 8 windows on).
CLOSING_FRAMES = framing.CONTEXT + 1
# Slots from a reply's first audio to the loop position its first frame is rendered for. If it
# cannot start by then, the idle picture before that position is held until it can.
PREROLL_FRAMES = 5
MAX_START_S = 1.0  # a reply starts at most this long after its first audio, on time or not
# A reply's first request: few frames, so that it waits for less audio (each frame needs 0.49 s
# after it) and renders sooner; the requests after it grow (_segment_size).
FIRST_SEGMENT_FRAMES = 3
IDLE_BLOCK_FRAMES = 25  # idle frames rendered per request: a reply's segment, for the pace it measures
# Idle frames made when the session starts; an avatar of more frames has the rest rendered as the
# loop first reaches them, while no reply is being rendered.
IDLE_PREFILL_FRAMES = 250


# What a slot shows (Frame.shown):
RENDERED = "rendered"  # the picture rendered for this slot
SUBSTITUTED = "substituted"  # a reply's slot whose picture was late: another of the reply's, with this slot's audio
HELD = (
    "held"  # the picture before, with silence, and the loop waits: the reply has not started or its audio has not come
)


@dataclass
class Frame:
    position: int  # in the avatar's loop (framing.pingpong)
    jpeg: bytes
    audio: np.ndarray  # float32 [640] at 16 kHz: what plays while this frame is shown
    speaking: bool
    shown: str = RENDERED

    @property
    def held(self) -> bool:
        """The picture before, again, with silence: the loop waited."""
        return self.shown == HELD

    @property
    def late(self) -> bool:
        """Another picture than this slot's, on this slot's own audio."""
        return self.shown == SUBSTITUTED


@dataclass
class ReplyReport:
    """What a reply's listener got: its slots, the late ones, and how soon it was seen."""

    slots: int = 0
    late: int = 0  # slots that showed another picture (SUBSTITUTED)
    held: int = 0  # slots the reply waited for its own audio: silence put into the voice
    refused: int = 0  # segments the server refused as too late to be shown
    first_frame_s: float | None = None  # from its first audio to its first rendered picture shown
    interrupted: bool = False


@dataclass(eq=False)
class Reply:
    """One reply: a stream of lead-in silence, its speech and trailing silence (16 kHz),
    rendered by a client of its own (what interrupt() cancels)."""

    start: int  # the loop position its first shown frame has
    client: LipsyncClient
    first_audio: float  # event-loop time its first audio came
    audio: np.ndarray = field(default_factory=lambda: np.zeros(LEAD_FRAMES * FRAME_SAMPLES, np.float32))
    last: int | None = None  # the last stream frame shown, once the reply has ended
    failed: BaseException | None = None
    emitted: int = LEAD_FRAMES  # stream frames sent for rendering so far
    frames: dict[int, bytes] = field(default_factory=dict)  # stream frame -> JPEG
    in_flight: dict[int, float] = field(default_factory=dict)  # first stream frame -> when it is expected
    playing: bool = False  # its first slot has been shown
    report: ReplyReport = field(default_factory=ReplyReport)

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

    def has_audio(self, index: int) -> bool:
        """Whether stream frame `index`'s own audio has come (or the reply has ended)."""
        return self.ended or self.audio.size >= (index + 1) * FRAME_SAMPLES

    def on_hand(self) -> int:
        """Its frames rendered without a gap from the first shown: how far ahead it is."""
        count = 0
        while LEAD_FRAMES + count in self.frames:
            count += 1
        return count

    def substitute(self, index: int) -> bytes | None:
        """The rendered picture nearest stream frame `index` (the earlier one on a tie)."""
        if not self.frames:
            return None
        return self.frames[min(self.frames, key=lambda k: (abs(k - index), k))]

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
        max_in_flight: int = 1,
        segment_frames: int = 25,
        frame_size: tuple[int, int] | None = None,
        **client_options,
    ):
        """`render_ahead_s`: how far rendering may run ahead of the frame on screen (what an
        interruption throws away at most). `segment_frames`: frames a request renders at most (a
        reply's first ones are smaller: _segment_size). `max_in_flight`: requests under way at
        once. The defaults are what renders fastest for one session on a CPU server: a
        second's frames a request (one UNet call) and one request at a time, as requests in
        flight together share its cores and come slower (perf/README.md). A GPU server overlaps
        them: raise max_in_flight.
        `frame_size`: (width, height) the server makes the frames at, if smaller than the
        avatar's own (what the session is shown at: pasting and encoding cost less).
        `client_options`: LipsyncClient's (keys, protocol, retries)."""
        self.url, self.avatar, self.version = url, avatar, version
        self.client_options = client_options
        self.render_ahead = round(render_ahead_s * framing.FPS)
        self.max_in_flight, self.segment_frames = max_in_flight, segment_frames
        self.frame_size = frame_size
        self.idle = IdleFrames.shared(url, avatar, version, frame_size, client_options)
        self.pace = self.idle.pace
        self.position = LEAD_FRAMES  # far enough into the loop that a reply's lead-in has positions too
        self.replies: deque[Reply] = deque()  # the one being shown first, then those queued after it
        self.reports: deque[ReplyReport] = deque(maxlen=100)  # replies shown, the latest last
        self.on_reply: Callable[[ReplyReport], None] | None = None  # called with each of them
        self.error: BaseException | None = None  # why the last reply that failed could not be shown
        self.last_shown = b""
        self._errors: deque[BaseException] = deque(maxlen=10)  # not yet taken (take_error)
        self._next_slot: float | None = None  # event-loop time of the next slot, when played out in real time
        self._resampler: tuple[int, StreamResampler] | None = None
        self._changed = asyncio.Event()
        self._idle_filling = False
        self._tasks: set[asyncio.Task] = set()
        self.closed = False

    async def start(self) -> None:
        """Learns the avatar's loop and renders its idle frames (the first IDLE_PREFILL_FRAMES)
        that no other open session has made; the session's pace is first measured on them."""
        await asyncio.to_thread(self.idle.learn_loop)
        loop = asyncio.get_running_loop()
        for first in range(0, min(self.idle.loop_frames, IDLE_PREFILL_FRAMES), IDLE_BLOCK_FRAMES):
            sent = loop.time()
            made = await asyncio.to_thread(self.idle.ensure, first, IDLE_BLOCK_FRAMES)
            if made:
                self.pace.done(made, loop.time() - sent)

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
            reply = self.replies.popleft()
            reply.report.interrupted = True
            self._drop(reply)
        self._resampler = None
        self._changed.set()

    @property
    def speaking(self) -> bool:
        return bool(self.replies) and self.replies[0].playing

    @property
    def ahead_s(self) -> float:
        """Seconds of speech taken in and not yet shown (what a caller bounds its input by)."""
        frames = sum(max(0.0, reply.audio.size / FRAME_SAMPLES - LEAD_FRAMES) for reply in self.replies)
        if self.replies:  # the lead-in is never shown
            frames -= min(max(0, self.replies[0].stream_frame(self.position) - LEAD_FRAMES), frames)
        return frames / framing.FPS

    def take_error(self) -> BaseException | None:
        """The oldest failure not taken yet of a reply that could not be shown (for a framework's
        error path), or None."""
        return self._errors.popleft() if self._errors else None

    def _begin_reply(self) -> None:
        start = self.position + PREROLL_FRAMES
        if self.replies:  # after the one queued before it, which has ended
            before = self.replies[-1]
            assert before.last is not None
            start = max(start, before.start + before.last - LEAD_FRAMES + 1)
        loop = asyncio.get_running_loop()
        reply = Reply(start, LipsyncClient(self.url, **self.client_options), loop.time())
        self.replies.append(reply)
        self._spawn(self._render(reply))

    def _fail(self, reply: Reply, error: BaseException) -> None:
        if reply in self.replies:
            reply.failed = self.error = error
            self._errors.append(error)
            log.warning("a reply cannot be shown, the avatar idles: %s", error)
        self._changed.set()

    def _drop(self, reply: Reply) -> None:
        reply.client.cancel()
        reply.frames.clear()
        if reply.playing:  # shown, to its end or interrupted
            self.reports.append(reply.report)
            if self.on_reply is not None:
                self.on_reply(reply.report)

    # Rendering --------------------------------------------------------------------------------

    async def _render(self, reply: Reply) -> None:
        """Sends the reply's segments as its audio makes frames exact, within the render-ahead
        bound and `max_in_flight`; ends when every frame it shows is sent or it is dropped."""
        try:
            await self._send_segments(reply)
        except Exception as error:  # the reply cannot be shown: the avatar idles, never freezes
            self._fail(reply, error)

    async def _send_segments(self, reply: Reply) -> None:
        loop = asyncio.get_running_loop()
        while reply in self.replies and reply.failed is None:
            received = reply.audio.size
            ready = streaming.ready_frames(received)
            known = ready if reply.last is None else min(ready, reply.last + 1)
            limit = min(known, reply.stream_frame(self.position) + self.render_ahead)
            size = self._segment_size(reply)
            # Audio coming in real time is sent a block at a time (what keeps its start within
            # MAX_START_S: a frame needs 0.49 s of audio after it); held back by render-ahead,
            # a whole segment (a request's cost on a CPU server); at the end, the rest.
            if limit == known:
                room_needed = 1 if reply.ended else min(size, streaming.BLOCK_FRAMES)
            else:
                room_needed = max(1, min(size, self.render_ahead // 2))
            if limit - reply.emitted >= room_needed and len(reply.in_flight) < self.max_in_flight:
                upto = min(limit, reply.emitted + size)
                # Only the audio its frames depend on: the encoder's work grows with what is sent.
                part = streaming.segment(reply.emitted, upto, min(received, streaming.samples_needed(upto)))
                audio = reply.audio[part.begin : part.end]
                reply.emitted = upto
                due = self._due(reply, part.stream_frame)
                now = loop.time()
                if due is not None and due <= now:  # its first slot has passed: late whatever happens
                    continue
                expected = now + (self.pace.latency_s(part.count) or 0.0)
                reply.in_flight[part.stream_frame] = expected
                self._spawn(self._render_segment(reply, audio, part, None if due is None else due - now))
                continue
            if reply.last is not None and reply.emitted > reply.last:
                return
            self._changed.clear()
            await self._changed.wait()

    def _segment_size(self, reply: Reply) -> int:
        """Frames of its next request: FIRST_SEGMENT_FRAMES, then as many as the reply has
        sent, in whole blocks, from one block to segment_frames (3, 5, 5, 10, 20, 25 ...): its
        first picture comes one small request after its audio, and each request comes before
        the frames on hand have played."""
        sent = reply.emitted - LEAD_FRAMES
        if sent == 0:
            return FIRST_SEGMENT_FRAMES
        blocks = sent // streaming.BLOCK_FRAMES * streaming.BLOCK_FRAMES
        return max(streaming.BLOCK_FRAMES, min(self.segment_frames, blocks))

    def _due(self, reply: Reply, index: int) -> float | None:
        """Event-loop time stream frame `index` of `reply` is shown at the latest (the reply
        starting at most MAX_START_S after its first audio); None without a real-time playout."""
        if self._next_slot is None:
            return None
        shown_from_start = (index - LEAD_FRAMES) / framing.FPS
        if reply.playing:
            return self._next_slot + (reply.start - self.position) / framing.FPS + shown_from_start
        latest_start = max(
            reply.first_audio + MAX_START_S, self._next_slot + (reply.start - self.position) / framing.FPS
        )
        return latest_start + shown_from_start

    async def _render_segment(self, reply: Reply, audio: np.ndarray, part: Segment, bound_s: float | None) -> None:
        """One segment. With a bound (a real-time playout) it is sent once: the server renders
        it in time or refuses it at once, and then its slots are late."""
        client, loop = reply.client, asyncio.get_running_loop()
        sent = loop.time()
        stream = RenderRequest(
            audio,
            framing.SAMPLE_RATE,
            self.avatar,
            self.version,
            reply.start - LEAD_FRAMES,
            None,
            bound_s,
            self.frame_size,
        )
        request = stream.part(audio, part)
        try:
            if bound_s is None:  # no real-time playout: retried while it fails for a passing reason
                jpegs = await asyncio.to_thread(client.render_segment, client.render_request, request)
            else:
                jpegs = await asyncio.to_thread(client.render_request, request)
            if len(jpegs) != part.count:
                raise RuntimeError(f"the server returned {len(jpegs)} of the segment's {part.count} frames")
            self.pace.done(part.count, loop.time() - sent)
            if reply in self.replies:
                reply.frames.update(zip(range(part.stream_frame, part.stream_frame + part.count), jpegs))
        except Cancelled:
            pass
        except InferenceServerException as error:
            if bound_s is not None and "UNAVAILABLE" in str(error.status()):  # too late to be shown
                reply.report.refused += 1
                log.info("a segment of %d frames was refused, its slots will be late: %s", part.count, error.message())
            else:
                self._fail(reply, error)
        except Exception as error:  # a reply that cannot be shown
            self._fail(reply, error)
        finally:
            reply.in_flight.pop(part.stream_frame, None)
            self._changed.set()

    # Output -----------------------------------------------------------------------------------

    async def frames(self, realtime: bool = True) -> AsyncIterator[Frame]:
        """The frames to show, 25 a second (`realtime`: the voice is the clock, see the module's
        text), or each as soon as it is rendered, every reply frame waited for (tests, files)."""
        loop = asyncio.get_running_loop()
        started, shown = loop.time(), 0
        while True:
            if realtime:  # the slot first, then its frame: what interrupt() dropped is not shown
                self._next_slot = started + shown / framing.FPS
                await asyncio.sleep(max(0.0, self._next_slot - loop.time()))
                frame = self._slot(loop.time())
            else:
                frame = await self._next_frame()
            if frame.shown != HELD:
                self.position += 1
                self._changed.set()  # the render-ahead bound moves with the position
            self.last_shown = frame.jpeg
            shown += 1
            yield frame

    def _slot(self, now: float) -> Frame:
        """What the slot due now shows."""
        silence = np.zeros(FRAME_SAMPLES, np.float32)
        while True:
            reply = self.replies[0] if self.replies else None
            if reply is None or self.position < reply.start:
                idle = self._idle_frame()
                return idle if idle is not None else Frame(self.position, self.last_shown, silence, False, HELD)
            index = reply.stream_frame(self.position)
            if reply.failed is not None or (reply.last is not None and index > reply.last):
                self._drop(self.replies.popleft())  # over, or it cannot be shown: idle from here
                continue
            if not reply.playing:
                if not self._may_start(reply, now):
                    return Frame(self.position, self.last_shown, silence, False, HELD)
                reply.playing = True
            if not reply.has_audio(index):  # the speech itself is late: the reply waits for it
                reply.report.held += 1
                return Frame(self.position, self.last_shown, silence, True, HELD)
            for late in [k for k in reply.frames if k < index]:  # never shown after its slot
                del reply.frames[late]
            reply.report.slots += 1
            jpeg = reply.frames.pop(index, None)
            if jpeg is not None:
                if reply.report.first_frame_s is None:
                    reply.report.first_frame_s = now - reply.first_audio
                return Frame(self.position, jpeg, reply.frame_audio(index), True)
            reply.report.late += 1
            substitute = reply.substitute(index) or self.last_shown
            return Frame(self.position, substitute, reply.frame_audio(index), True, SUBSTITUTED)

    def _may_start(self, reply: Reply, now: float) -> bool:
        """Whether every slot of `reply` from now on will be on time at the session's pace (or
        it has waited MAX_START_S since its first audio), as a player decides it has buffered
        enough: each segment in flight, and the next one to send, must come a slot before its
        first frame's slot; the next one waits for its audio (at the rate it has come so far)
        and for the request before it. A server slower than real time must also make the
        frames known so far before the last of them is due."""
        if now >= reply.first_audio + MAX_START_S:
            return True
        on_hand = reply.on_hand()
        if not on_hand:
            return False
        if reply.last is not None and LEAD_FRAMES + on_hand > reply.last:
            return True
        frames_per_s = self.pace.frames_per_s
        if frames_per_s is None:
            return False

        def slot(index: int) -> float:  # when stream frame `index` is shown if the reply starts now, less a slot
            return now + (index - LEAD_FRAMES - 1) / framing.FPS

        if any(expected > slot(first) for first, expected in reply.in_flight.items()):
            return False
        following = reply.emitted
        if reply.last is not None and following > reply.last:
            return True
        size = self._segment_size(reply)
        needed = following + min(size, streaming.BLOCK_FRAMES)  # audio comes in, a block is sent
        if reply.last is not None:
            needed = min(needed, reply.last + 1)
        busy_until = max([now, *reply.in_flight.values()])
        done = max(busy_until, self._audio_ready(reply, needed, now)) + (self.pace.latency_s(size) or 0.0)
        if done > slot(following):
            return False
        known = reply.last + 1 if reply.last is not None else streaming.ready_frames(reply.audio.size)
        return done + max(0, known - following - size) / frames_per_s <= slot(known - 1)

    def _audio_ready(self, reply: Reply, frames: int, now: float) -> float:
        """When the reply's first `frames` stream frames can be rendered, at the rate its audio
        has come since its first."""
        needed = streaming.samples_needed(frames)
        if reply.ended or reply.audio.size >= needed:
            return now
        came = reply.audio.size - LEAD_FRAMES * FRAME_SAMPLES
        rate = came / max(now - reply.first_audio, 1e-3)
        return now + (needed - reply.audio.size) / max(rate, 1.0)

    async def _next_frame(self) -> Frame:
        """The frame at the current position, once it is rendered."""
        while True:
            reply = self.replies[0] if self.replies else None
            if reply is not None and self.position >= reply.start:
                index = reply.stream_frame(self.position)
                if reply.failed is not None or (reply.last is not None and index > reply.last):
                    self._drop(self.replies.popleft())  # over, or it cannot be shown: idle from here
                    continue
                if index in reply.frames:
                    reply.playing = True
                    return Frame(self.position, reply.frames.pop(index), reply.frame_audio(index), True)
            else:
                idle = self._idle_frame()
                if idle is not None:
                    return idle
            self._changed.clear()
            await self._changed.wait()

    def _idle_frame(self) -> Frame | None:
        """The idle face at the current position, if it is rendered (the next ones are
        rendered meanwhile)."""
        self._prefetch_idle()
        jpeg = self.idle.frames.get(self.idle.index(self.position))
        return None if jpeg is None else Frame(self.position, jpeg, np.zeros(FRAME_SAMPLES, np.float32), False)

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
