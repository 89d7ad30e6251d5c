"""The example agent (lipsync.agent): a real Pipecat pipeline with the small WebRTC transport,
the session's server, and Debian's Chromium as the far end (perf/agent.py's page driver, the
fake microphone speaking espeak-ng's voice). The avatar speaks a reply, the microphone's speech
interrupts the next through Pipecat's VAD, and it falls idle. Every wait is for an event."""

import asyncio
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pipecat.frames.frames import (
    InputAudioRawFrame,
    InputTransportMessageFrame,
    InterruptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStoppedFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)

from lipsync.agent.app import Agent
from lipsync.agent.espeak import EspeakTTSService
from lipsync.agent.responder import Responder, say_message
from lipsync.web.guard import origins_for
from lipsync_protocol import framing
from lipsync_server.demo import synthetic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "perf"))
from agent import run_conversation  # noqa: E402  (make bench-agent's driver)
from test_pipecat_service import run_pipeline  # noqa: E402

MAX_MBIT_PER_S = 2.0


@pytest.mark.integration
def test_the_avatar_speaks_is_interrupted_by_the_microphone_and_idles(server, grpc_url, tmp_path):
    run = run_conversation(grpc_url, server.repository, tmp_path, synthetic.TRAINED_VERSION, idle_s=2.0, reply_s=3.0)
    figures, page, line = run.figures, run.page, run.timeline
    assert figures["page_errors"] == []

    # The reply reached the page: the mouth opened while it played and is closed once it is over.
    begin, end = figures["reply_window"]
    shown = [(t / 1000, dark) for t, dark in page["shown"]]
    during = [dark for t, dark in shown if begin <= t <= end]
    assert max(during) > 100, "the mouth never opened at the page"
    assert page["heard"] and max(rms for t, rms in page["heard"] if begin <= t / 1000 <= end) > 0.05

    # The microphone's speech interrupted the second reply (Pipecat's VAD): after the first idle
    # frame that followed, nothing of the reply was shown, and the avatar kept showing frames.
    cut = line.wall(line.interruptions[0])
    after = [speaking for t, speaking, _ in line.pictures if line.wall(t) > cut]
    assert len(after) >= 2 * framing.FPS
    first_idle = after.index(False)
    assert not any(after[first_idle:]), "a frame of the interrupted reply after the avatar idled"

    # Listening costs no network inference; the stream stays under its bitrate.
    assert figures["idle_inferences_per_min"] == 0
    assert figures["video_mbit_per_s"]["max"] <= MAX_MBIT_PER_S


def offer_app() -> Agent:
    return Agent("127.0.0.1:1", "demo", origins=origins_for("127.0.0.1", 8090, []))


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "text/plain"}, "v=0", 415),  # a cross-site form's simple POST
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, "{}", 403),
        ({"Content-Type": "application/json", "Host": "rebound.example:8090"}, "{}", 421),
        ({"Content-Type": "application/json"}, "not json", 400),
        ({"Content-Type": "application/json"}, json.dumps({"type": "answer", "sdp": "v=0"}), 400),
        ({"Content-Type": "application/json"}, json.dumps({"type": "offer", "sdp": "garbage"}), 400),
    ],
    ids=["form-post", "other-origin", "rebound-host", "not-json", "not-an-offer", "no-media"],
)
def test_the_offer_is_refused_to_other_sites_and_bad_input(headers, body, status):
    async def post():
        async with TestClient(TestServer(offer_app().app(), host="127.0.0.1", port=8090)) as client:
            headers.setdefault("Host", "127.0.0.1:8090")
            response = await client.post("/api/offer", data=body, headers=headers)
            return response.status, await response.text()

    got, text = asyncio.run(post())
    assert got == status, text
    assert len(text) < 200


def test_typed_text_becomes_speech_and_the_users_speech_interrupts():
    """The responder in a real Pipecat pipeline, frames queued as the transport and VAD send them."""
    voice = (np.sin(np.arange(framing.SAMPLE_RATE) / 5) * 8000).astype("<i2")
    user = [InputAudioRawFrame(voice[i : i + 320].tobytes(), framing.SAMPLE_RATE, 1) for i in range(0, voice.size, 320)]

    async def talk(worker, recorder):
        await worker.queue_frame(InputTransportMessageFrame(message={"type": "say", "text": " Hello. "}))
        # (An interruption drops what is still queued: the text is taken first.)
        await recorder.until(lambda frames: any(isinstance(f, TTSSpeakFrame) for f in frames))
        await worker.queue_frames([VADUserStartedSpeakingFrame(), *user, VADUserStoppedSpeakingFrame()])
        await recorder.until(lambda frames: any(isinstance(f, TTSStoppedFrame) for f in frames))

    frames = asyncio.run(run_pipeline([Responder(echo=True)], talk))
    assert [f.text for f in frames if isinstance(f, TTSSpeakFrame)] == ["Hello."]
    assert any(isinstance(f, InterruptionFrame) for f in frames)  # the user spoke over the avatar
    assert not any(isinstance(f, InputAudioRawFrame) for f in frames)  # the microphone is not played
    echoed = b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame))
    assert echoed == voice.tobytes()  # the whole utterance, said back
    assert say_message({"type": "say", "text": "   "}) is None and say_message(["say"]) is None


def test_espeak_turns_typed_text_into_a_reply_that_ends():
    """Debian's espeak-ng as the agent's TTS, in a real pipeline: the text becomes audio frames,
    and the reply ends with a TTSStoppedFrame (what lets the avatar close its mouth)."""

    async def talk(worker, recorder):
        await worker.queue_frame(TTSSpeakFrame("Hello, I am the avatar."))
        await recorder.until(lambda frames: any(isinstance(f, TTSStoppedFrame) for f in frames))

    frames = asyncio.run(run_pipeline([EspeakTTSService()], talk))
    audio = [f for f in frames if isinstance(f, TTSAudioRawFrame)]
    samples = np.frombuffer(b"".join(f.audio for f in audio), "<i2")
    seconds = samples.size / audio[0].sample_rate
    assert 1.0 < seconds < 4.0, seconds  # a short sentence
    assert np.abs(samples).max() > 3000  # a voice, not silence
