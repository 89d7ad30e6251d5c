"""The voice is the clock (lipsync.conversation): against the real server, a reply's audio plays
contiguous whatever the server does, and a picture late for its slot is never shown after it.
What is asserted holds however the slots fall; how many are late is the benchmark's figure
(perf/conversations.py)."""

import asyncio
import shutil

import numpy as np
import pytest
from pipecat.frames.frames import (
    OutputAudioRawFrame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from test_pipecat_service import converse

from lipsync.client import LipsyncClient
from lipsync.conversation import HELD, LEAD_FRAMES, RENDERED, SUBSTITUTED, Conversation, Frame
from lipsync.pipecat_service import METADATA_KEY
from lipsync_protocol import framing
from lipsync_server.backend import deliberate_delay
from lipsync_server.model_configs import set_parameters

pytestmark = pytest.mark.integration
CHUNK = framing.SAMPLE_RATE // 50  # a TTS service's 20 ms frames


def as_played(pcm: np.ndarray) -> np.ndarray:
    """16-bit speech as the service plays it out: to float and back, as LipsyncAvatarService does."""
    return (np.clip(pcm.astype(np.float32) / 32768.0, -1.0, 1.0) * 32767.0).astype("<i2")


def test_a_reply_fed_faster_than_real_time_plays_its_voice_contiguous(grpc_url, speech):
    audio = np.concatenate([speech[0], speech[0][: 2 * framing.SAMPLE_RATE]])  # 8.5 s
    pcm = np.round(audio * 32767).astype("<i2")

    async def reply(worker, recorder):
        await worker.queue_frame(TTSStartedFrame())
        loop = asyncio.get_running_loop()
        began = loop.time()
        for k, at in enumerate(range(0, pcm.size, CHUNK)):  # 4x real time, on an absolute schedule
            await worker.queue_frame(TTSAudioRawFrame(pcm[at : at + CHUNK].tobytes(), framing.SAMPLE_RATE, 1))
            await asyncio.sleep(max(0.0, began + (k + 1) * 0.02 / 4 - loop.time()))
        await worker.queue_frame(TTSStoppedFrame())

        def played_out(frames) -> bool:  # the reply, then a second of the idle face
            sounds = [np.frombuffer(f.audio, "<i2") for f in frames if type(f) is OutputAudioRawFrame]
            voiced = np.flatnonzero(np.concatenate([np.zeros(0, "<i2"), *sounds]))
            return voiced.size > 0 and sum(map(len, sounds)) - voiced[0] >= pcm.size + framing.SAMPLE_RATE

        await recorder.until(played_out)

    frames = asyncio.run(converse(grpc_url, reply))
    out = np.concatenate([np.frombuffer(f.audio, "<i2") for f in frames if type(f) is OutputAudioRawFrame])
    expected = as_played(pcm)
    expected = expected[np.flatnonzero(expected)[0] :]
    first = np.flatnonzero(out)[0]
    # Silence, then the speech sample for sample with no gap put in, then silence.
    assert np.array_equal(out[first : first + expected.size], expected)
    assert not out[first + expected.size :].any()
    shown = [f.metadata[METADATA_KEY] for f in frames if isinstance(f, OutputImageRawFrame)]
    assert not any(s["speaking"] and s["shown"] == HELD for s in shown)  # the voice never waited
    assert {s["shown"] for s in shown} <= {RENDERED, SUBSTITUTED, HELD}


@pytest.fixture(scope="module")
def slow_avatar(server, grpc_url) -> str:
    """The trained demo's version 2 slowed on purpose to well under 25 frames/s (60 ms more a
    frame: deliberate_delay, allowed on the tests' servers only). Returns its name."""
    copy = server.repository / "avatar_demoslow"
    source = server.repository / "avatar_demo"
    shutil.copytree(source / "media", copy / "media")
    shutil.copytree(source / "configs", copy / "configs")
    shutil.copytree(source / "2", copy / "2", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(source / "config.pbtxt", copy / "config.pbtxt")
    set_parameters(copy / "configs" / "cpu.pbtxt", new=True, **{deliberate_delay.PARAMETER: "60"})
    LipsyncClient(grpc_url).load_avatar("demoslow")
    yield "demoslow"
    LipsyncClient(grpc_url).unload_avatar("demoslow")


def test_on_a_server_slower_than_real_time_late_pictures_stay_out_and_the_voice_plays_on(grpc_url, speech, slow_avatar):
    audio = speech[0][: 3 * framing.SAMPLE_RATE]

    async def converse_slowly() -> tuple[list[Frame], Conversation]:
        talk = Conversation(grpc_url, slow_avatar)
        await talk.start()
        shown: list[Frame] = []
        async for frame in talk.frames():  # in real time: the voice is the clock
            shown.append(frame)
            if len(shown) == 5:
                talk.say(audio, framing.SAMPLE_RATE)  # the whole reply at once
                talk.end_of_speech()
                reply = talk.replies[0]
            if len(shown) > 5 and not talk.replies and not frame.speaking:
                break
        await talk.close()
        return shown, reply

    shown, reply = asyncio.run(converse_slowly())
    expected = LipsyncClient(grpc_url).render(
        reply.audio, framing.SAMPLE_RATE, slow_avatar, None, reply.start - LEAD_FRAMES
    )
    speaking = [f for f in shown if f.speaking]
    assert speaking and not any(f.shown == HELD for f in speaking)  # the voice never waited...
    heard = np.concatenate([f.audio for f in speaking])
    assert np.array_equal(heard[: audio.size], audio)  # ...and played on, whole and in order
    late = [f for f in speaking if f.shown == SUBSTITUTED]
    assert late, "the slowed server made no slot late: the test shows nothing"
    before = {id(f): shown[k - 1].jpeg for k, f in enumerate(shown) if k}
    for frame in speaking:
        index = reply.stream_frame(frame.position)
        if frame.shown == RENDERED:  # an on-time slot: its own picture, on its own audio
            assert frame.jpeg == expected[index], index
            assert np.array_equal(frame.audio, reply.frame_audio(index))
        # A picture of an earlier slot is shown again only as the picture before: one that came
        # after its slot never is.
        earlier = {expected[k] for k in range(LEAD_FRAMES, index)}
        if frame.jpeg in earlier:
            assert frame.jpeg == before[id(frame)], index
    print(f"{len(late)} of {len(speaking)} slots late on the slowed server")


def test_a_deliberate_delay_is_refused_outside_the_tests():
    config = {"parameters": {deliberate_delay.PARAMETER: {"string_value": "60"}}}
    assert deliberate_delay.seconds_per_frame(config, {deliberate_delay.ALLOWED_ENV: "1"}) == 0.06
    with pytest.raises(ValueError, match="for the project's tests only"):
        deliberate_delay.seconds_per_frame(config, {})
    assert deliberate_delay.seconds_per_frame({}, {}) == 0.0
    for bad in ("x", "-1", "5000"):
        config["parameters"][deliberate_delay.PARAMETER]["string_value"] = bad
        with pytest.raises(ValueError, match=deliberate_delay.PARAMETER):
            deliberate_delay.seconds_per_frame(config, {deliberate_delay.ALLOWED_ENV: "1"})
