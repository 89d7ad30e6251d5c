"""A conversation session (lipsync.conversation) against the real server: a reply's frames are the
render of its audio after silence, the loop never jumps, audio goes with its frame, the idle face
is the network's output for silence and costs no inference once made (in any session open at the
time), and an interruption leaves nothing of the reply on screen."""

import asyncio
import io
import math

import numpy as np
import pytest
from PIL import Image

from lipsync.client import LipsyncClient
from lipsync.conversation import CLOSING_FRAMES, FRAME_SAMPLES, LEAD_FRAMES, Conversation, Frame
from lipsync_protocol import framing

pytestmark = pytest.mark.integration


async def take(talk: Conversation, count: int) -> list[Frame]:
    """The next `count` frames, each as soon as it is rendered (no playout clock)."""
    frames: list[Frame] = []
    async for frame in talk.frames(realtime=False):
        frames.append(frame)
        if len(frames) == count:
            return frames
    return frames


def avatar_inferences(client: LipsyncClient) -> int:
    return sum(s["inferences"] for name, s in client.statistics().items() if name.startswith("avatar_demo/"))


@pytest.mark.parametrize("render_ahead_s", [2.0, 0.4], ids=["within-render-ahead", "longer-than-render-ahead"])
def test_a_reply_is_the_render_of_its_audio_after_silence_and_the_loop_never_jumps(grpc_url, speech, render_ahead_s):
    audio = speech[0][: 3 * framing.SAMPLE_RATE // 2]  # 1.5 s at 16 kHz

    async def converse():
        talk = Conversation(grpc_url, "demo", render_ahead_s=render_ahead_s)
        await talk.start()
        frames = await take(talk, 3)  # listening
        for chunk in np.array_split(audio, 7):  # a text-to-speech's bursts
            talk.say(chunk, framing.SAMPLE_RATE)
        talk.end_of_speech()
        reply = talk.replies[0]
        shown = reply.start - talk.position + reply.last - LEAD_FRAMES + 1
        frames += await asyncio.wait_for(take(talk, shown + 5), 120)
        await talk.close()
        return frames, reply

    frames, reply = asyncio.run(converse())
    assert [f.position for f in frames] == list(range(frames[0].position, frames[0].position + len(frames)))
    speaking = [f for f in frames if f.speaking]
    # The reply's frames: those its audio spans, and those whose context still reaches it.
    assert len(speaking) == reply.last - LEAD_FRAMES + 1 == math.ceil(audio.size / FRAME_SAMPLES) + CLOSING_FRAMES
    assert speaking[0].position == reply.start and not frames[-1].speaking  # then idle again
    # Every frame of the reply is that of rendering lead-in silence, the reply and silence.
    expected = LipsyncClient(grpc_url).render(reply.audio, framing.SAMPLE_RATE, "demo", None, reply.start - LEAD_FRAMES)
    assert [f.jpeg for f in speaking] == expected[LEAD_FRAMES : reply.last + 1]
    # ...shown with its own 40 ms of the reply's audio, and silence around it.
    heard = np.concatenate([f.audio for f in speaking])
    assert np.array_equal(heard[: audio.size], audio) and not heard[audio.size :].any()
    assert all(f.audio.shape == (FRAME_SAMPLES,) and not f.audio.any() for f in frames if not f.speaking)


def test_the_idle_face_is_the_networks_output_for_silence_and_listening_costs_no_inference(grpc_url):
    client = LipsyncClient(grpc_url)

    async def listen():
        talk = Conversation(grpc_url, "demo")
        await talk.start()
        first_pass = await take(talk, 2 * talk.idle.loop_frames)  # every idle frame, made once
        made = avatar_inferences(client)
        second_pass = await take(talk, 2 * talk.idle.loop_frames)
        # Another session on the same avatar meanwhile starts on the frames already made.
        other = Conversation(grpc_url, "demo")
        await other.start()
        other_pass = await take(other, 2 * other.idle.loop_frames)
        await other.close()
        await talk.close()
        return first_pass, second_pass + other_pass, made

    first_pass, second_pass, made = asyncio.run(listen())
    assert avatar_inferences(client) == made  # listening, and a second session: no inference at all
    assert not any(f.speaking for f in first_pass + second_pass)
    silence = client.render(np.zeros(3 * framing.SAMPLE_RATE, np.float32), framing.SAMPLE_RATE, "demo")
    shown = {f.position: f.jpeg for f in first_pass + second_pass}
    # Away from the clip's edges a long silence's frames are the idle face at the same positions.
    for position in range(LEAD_FRAMES, len(silence) - LEAD_FRAMES):
        if position in shown:
            assert shown[position] == silence[position], position


def test_after_an_interruption_nothing_of_the_reply_is_shown(grpc_url, speech):
    audio = speech[0][: 4 * framing.SAMPLE_RATE]

    async def interrupted():
        talk = Conversation(grpc_url, "demo")
        await talk.start()
        talk.say(audio, framing.SAMPLE_RATE)  # a long reply, all at once, not yet ended
        before = []
        async for frame in talk.frames(realtime=False):
            before.append(frame)
            if sum(f.speaking for f in before) == 5:
                break
        talk.interrupt()  # the user speaks
        after = await take(talk, 40)
        await talk.close()
        return before, after, talk

    before, after, talk = asyncio.run(interrupted())
    assert not any(f.speaking for f in after)  # idle from the very next frame
    assert after[0].position == before[-1].position + 1  # and the loop goes on where it was
    idle = set(talk.idle.frames.values())
    assert all(f.jpeg in idle and not f.audio.any() for f in after)
    assert not talk.replies


def test_played_out_live_every_picture_is_at_the_sessions_frame_size(grpc_url, speech):
    """A live reply's segments carry the session's frame size as its idle frames do: the server
    pastes and encodes at that size, and nothing is scaled in the client."""
    audio = speech[0][: 2 * framing.SAMPLE_RATE]

    async def played() -> list[Frame]:
        talk = Conversation(grpc_url, "demo", frame_size=(320, 180))
        await talk.start()
        talk.say(audio, framing.SAMPLE_RATE)
        talk.end_of_speech()
        frames: list[Frame] = []
        async for frame in talk.frames():  # in real time: each segment has its deadline
            frames.append(frame)
            if sum(f.speaking for f in frames) and not frame.speaking and not talk.replies:
                break
        await talk.close()
        return frames

    frames = asyncio.run(played())
    assert sum(f.speaking for f in frames) >= 2 * framing.FPS
    assert {Image.open(io.BytesIO(f.jpeg)).size for f in frames} == {(320, 180)}
