"""The web page in a real browser: Debian's Chromium, headless, driven by Playwright (no browser
download), with a fake microphone fed from a speech file, in front of the gateway (`lipsync
web`) and the session's server."""

import asyncio
import hashlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from lipsync.client import LipsyncClient
from lipsync.conversation import CLOSING_FRAMES
from lipsync.session_metrics import ADMIN_HEADER
from lipsync.transport import Cancelled
from lipsync.web.gateway import FLAG_HELD, FLAG_LATE, FLAG_SPEAKING, FRAME_HEADER, MAX_AHEAD_S
from lipsync_protocol import framing, waiting
from lipsync_protocol.keys import ADMIN
from lipsync_server.calibration import voice
from lipsync_server.demo import synthetic, training

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "perf"))
from agent import probe_box  # noqa: E402  (make bench-agent's)
from web_latency import Gateway, browser, open_page, talk, wait_until, write_wav  # noqa: E402  (make bench-web's helpers)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
ONE_FRAME_MS = 1000 / framing.FPS


@pytest.fixture(scope="module")
def gateway(grpc_url, tmp_path_factory):
    running = Gateway(grpc_url, tmp_path_factory.mktemp("web") / "gateway.log").start()
    yield running
    running.stop()


def test_live_mode_shows_the_speech_in_sync_with_its_audio(gateway, grpc_url, tmp_path, server):
    """The held-out speech (3 s, a pause to 4.4 s, 4 s more) as the microphone; the trained demo."""
    audio = training.held_out_speech()
    pause_start, pause_end = (round(seconds * framing.FPS) for seconds in training.HELD_OUT_PAUSE)
    probe = ",".join(map(str, probe_box(server.repository, (1280, 720))))
    LipsyncClient(grpc_url).render(audio[:16000], 16000, "demo", synthetic.TRAINED_VERSION)  # in use already
    with browser(write_wav(tmp_path / "speech.wav", audio)) as page:
        open_page(page, gateway, f"avatar=demo&version={synthetic.TRAINED_VERSION}&probe={probe}")
        state = talk(page, len(audio))
    assert state["errors"] == []
    assert state["status"] == "done" and state["framesReceived"] == state["framesExpected"]
    # Every 40 ms of speech sent was shown once (frames the server was late with aside: the one
    # before is held), then the frames that close the mouth.
    speech_frames = -(-state["samplesSent"] // framing.SAMPLES_PER_FRAME)
    assert state["speakingFrames"] == speech_frames + CLOSING_FRAMES
    # Each frame shown while its audio played.
    offsets = np.array(state["syncOffsetsMs"])
    assert len(offsets) > speech_frames / 2 and np.abs(offsets).max() <= ONE_FRAME_MS, offsets
    # The avatar's mouth (dark pixels in its box, as the page drew each frame) is open on the
    # speech and closed in the pause: the k-th frame of speech shows the speech k / 25 s into
    # the microphone's stream; a held frame shows the one before.
    areas: dict[str, list[int]] = {"speech": [], "pause": []}
    ordinal, pictured = -1, None
    for index, (_, flags) in enumerate(state["frameInfo"]):
        if not flags & FLAG_HELD:
            ordinal += bool(flags & FLAG_SPEAKING)
            pictured = ordinal if flags & FLAG_SPEAKING else None
        dark = state["mouth"][index] if index < len(state["mouth"]) else None
        if pictured is None or dark is None:
            continue
        if 20 <= pictured < pause_start - 10:
            areas["speech"].append(dark)
        elif pause_start + 10 <= pictured < pause_end - 8:
            areas["pause"].append(dark)
    assert len(areas["speech"]) >= 10 and len(areas["pause"]) >= 5, areas
    assert max(areas["speech"]) > 200 and max(areas["pause"]) < max(areas["speech"]) / 4, areas


def cli_frames(grpc_url: str, audio: Path, folder: Path, version: int) -> list[str]:
    lipsync = str(Path(sys.executable).parent / "lipsync")
    command = [lipsync, "--url", grpc_url, "render", str(audio), "--avatar", "demo", "--version", str(version)]
    subprocess.run([*command, "-o", str(folder)], check=True, capture_output=True)
    return [hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.glob("*.jpg"))]


def test_file_mode_plays_the_frames_the_cli_renders(gateway, grpc_url, tmp_path):
    speech = write_wav(tmp_path / "speech.wav", voice.speech(2.0, framing.SAMPLE_RATE, seed=11))
    expected = cli_frames(grpc_url, speech, tmp_path / "cli", synthetic.TRAINED_VERSION)
    with browser() as page:
        open_page(page, gateway, f"avatar=demo&version={synthetic.TRAINED_VERSION}")
        page.set_input_files("#file", str(speech))
        page.click("#render")
        wait_until(page, "window.lipsync.status === 'done'", 60)
        wait_until(page, f"window.lipsync.hashes.filter(Boolean).length === {len(expected)}")
        wait_until(page, "window.lipsync.framesDrawn > 10")  # it plays
        state = page.evaluate("window.lipsync")
    assert state["hashes"] == expected
    assert state["errors"] == []


@pytest.mark.parametrize(
    ("query", "upload", "shown"),
    [
        ("avatar=nobody", b"", "unknown avatar 'nobody'"),
        ("avatar=demo", b"this is not audio", "could not read the file as audio"),
    ],
    ids=["unknown-avatar", "not-audio"],
)
def test_errors_show_as_messages_in_the_page(gateway, tmp_path, query, upload, shown):
    path = tmp_path / "upload.wav"
    if upload:
        path.write_bytes(upload)
    else:
        write_wav(path, voice.speech(1.0, framing.SAMPLE_RATE, seed=2))
    with browser() as page:
        open_page(page, gateway, query)
        page.set_input_files("#file", str(path))
        page.click("#render")
        wait_until(page, "window.lipsync.errors.length > 0", 30)
        assert shown in page.inner_text("#messages")


def test_a_silent_microphone_is_pointed_out(gateway, tmp_path):
    silence = write_wav(tmp_path / "silence.wav", np.zeros(5 * framing.SAMPLE_RATE, np.float32))
    with browser(silence) as page:
        open_page(page, gateway, "avatar=demo")
        page.click("#live")
        wait_until(page, "document.querySelector('#messages').textContent.includes('no sound')", 15)
        wait_until(page, "window.lipsync.framesReceived > 0", 60)  # it still shows the avatar
        page.click("#stop")


def test_a_page_without_a_microphone_says_so(gateway):
    with browser(fake_microphone=False) as page:
        open_page(page, gateway, "avatar=demo")
        page.click("#live")
        wait_until(page, "window.lipsync.errors.length > 0")
        assert "no microphone" in page.inner_text("#messages")


async def raw_session(
    gateway: Gateway, first: dict, chunks: list[bytes], origin: str | None = None, last: dict | None = None
) -> list:
    """What the gateway answers a WebSocket client that sends `first`, then `chunks` at once,
    then `last`."""
    headers = {"Origin": origin or gateway.url.rstrip("/")}
    replies = []
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(gateway.url + "ws", headers=headers) as ws:
            await ws.send_str(json.dumps(first))
            for chunk in chunks:
                await ws.send_bytes(chunk)
            if last is not None:
                await ws.send_str(json.dumps(last))
            async for message in ws:
                replies.append(message.data)
                if message.type == aiohttp.WSMsgType.TEXT and json.loads(message.data)["type"] in ("error", "done"):
                    break
    return replies


def frames_of(replies: list) -> list[tuple[int, int, bytes, np.ndarray]]:
    """(loop position, flags, JPEG, audio as int16) of each frame the gateway sent."""
    found = []
    for number, data in enumerate(r for r in replies if isinstance(r, bytes)):
        index, position, flags, size = FRAME_HEADER.unpack_from(data)
        assert index == number
        jpeg = data[FRAME_HEADER.size : FRAME_HEADER.size + size]
        found.append((position, flags, jpeg, np.frombuffer(data[FRAME_HEADER.size + size :], "<i2")))
    return found


def test_live_mode_takes_a_reply_at_once_and_sends_its_audio_with_its_frames(gateway):
    """A text-to-speech reply arrives many times faster than real time: the avatar idles, speaks
    it (the same samples back, 640 with each frame) and closes its mouth."""
    pcm = (voice.speech(2.0, framing.SAMPLE_RATE, seed=4) * 32767).astype("<i2")
    chunks = [pcm[i : i + 3200].tobytes() for i in range(0, len(pcm), 3200)]  # 200 ms each, all at once
    live = {"type": "live", "avatar": "demo", "version": synthetic.TRAINED_VERSION}
    replies = asyncio.run(raw_session(gateway, live, chunks, last={"type": "stop"}))
    frames = frames_of(replies)
    assert json.loads(replies[-1]) == {"type": "done", "frames": len(frames)}
    speaking = [frame for frame in frames if frame[1] & FLAG_SPEAKING and not frame[1] & FLAG_HELD]
    assert len(speaking) == len(pcm) // framing.SAMPLES_PER_FRAME + CLOSING_FRAMES
    assert not frames[0][1] & FLAG_SPEAKING  # idle first: the reply starts a few frames on
    returned = np.concatenate([audio for _, _, _, audio in speaking])
    np.testing.assert_array_equal(returned[: len(pcm)], pcm)
    assert not returned[len(pcm) :].any()
    assert all(audio.size == framing.SAMPLES_PER_FRAME for *_, audio in frames)
    positions = [position for position, flags, _, _ in frames if not flags & FLAG_HELD]
    assert positions == list(range(positions[0], positions[0] + len(positions)))  # the loop never jumps
    assert all(Image.open(io.BytesIO(jpeg)).size == (1280, 720) for _, _, jpeg, _ in speaking[::10])


def test_the_sessions_metrics_count_what_the_listener_got_for_the_administrator_only(gateway, grpc_url):
    """After a live reply: its slots, rendered or late, its voice stretch and first frame, on the
    gateway's /metrics, which answers the administrator key only."""
    pcm = (voice.speech(1.0, framing.SAMPLE_RATE, seed=5) * 32767).astype("<i2")
    live = {"type": "live", "avatar": "demo", "version": synthetic.TRAINED_VERSION}
    frames = frames_of(asyncio.run(raw_session(gateway, live, [pcm.tobytes()], last={"type": "stop"})))
    shown = sum(bool(flags & FLAG_SPEAKING) and not flags & FLAG_HELD for _, flags, _, _ in frames)
    late = sum(bool(flags & FLAG_LATE) for _, flags, _, _ in frames)

    async def scrape(headers: dict[str, str]) -> tuple[int, str]:
        async with aiohttp.ClientSession() as http:
            async with http.get(gateway.url + "metrics", headers=headers) as response:
                return response.status, await response.text()

    key = ADMIN.for_client(grpc_url)
    assert key
    assert asyncio.run(scrape({}))[0] == 401
    assert asyncio.run(scrape({ADMIN_HEADER: "a guess"}))[0] == 401
    status, text = asyncio.run(scrape({"Authorization": f"Bearer {key}"}))
    assert status == 200
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert values[("lipsync_sessions_open", ())] == 0  # the page's session has ended
    slots = {shown: values[("lipsync_reply_slots_total", (("shown", shown),))] for shown in ("rendered", "substituted")}
    assert slots["rendered"] + slots["substituted"] >= shown and slots["substituted"] >= late
    assert values[("lipsync_voice_stretch_seconds_count", ())] >= 1
    assert values[("lipsync_voice_stretch_seconds_sum", ())] == 0  # the whole reply came at once
    assert values[("lipsync_first_frame_seconds_count", ())] >= 1


def test_live_mode_bounds_the_speech_waiting_to_be_shown(gateway):
    second = np.zeros(framing.SAMPLE_RATE, "<i2").tobytes()
    chunks = [second] * (int(MAX_AHEAD_S) + 2)
    replies = asyncio.run(raw_session(gateway, {"type": "live", "avatar": "demo", "version": 0}, chunks))
    assert "waiting to be shown" in json.loads(replies[-1])["message"]


def test_bad_messages_get_clear_answers_and_other_sites_are_refused(gateway):
    replies = asyncio.run(raw_session(gateway, {"type": "live", "avatar": "../etc"}, []))
    assert "bad request: avatar: invalid avatar name '../etc'" in json.loads(replies[-1])["message"]
    replies = asyncio.run(raw_session(gateway, {"type": "live", "avatar": "nobody"}, [bytes(640)]))
    assert "unknown avatar 'nobody'" in json.loads(replies[-1])["message"]
    replies = asyncio.run(raw_session(gateway, {"type": "live", "avatar": "demo"}, [], last={"type": "pause"}))
    assert 'send {"type": "stop"} or {"type": "interrupt"}' in json.loads(replies[-1])["message"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        asyncio.run(raw_session(gateway, {"type": "file", "avatar": "demo"}, [], origin="http://evil.example"))
    assert refused.value.status == 403


def test_a_closed_tab_mid_stream_leaves_the_gateway_serving(gateway, tmp_path):
    speech = write_wav(tmp_path / "speech.wav", voice.speech(6.0, framing.SAMPLE_RATE, seed=6))
    with browser(speech) as page:
        open_page(page, gateway, "avatar=demo")
        page.click("#live")
        wait_until(page, "window.lipsync.framesReceived > 5", 30)
        page.close()  # mid-stream
    replies = asyncio.run(raw_session(gateway, {"type": "file", "avatar": "demo"}, [speech.read_bytes()]))
    assert json.loads(replies[-1]) == {"type": "done", "frames": framing.frame_count(6 * framing.SAMPLE_RATE)}


def test_the_page_reconnects_after_a_gateway_restart(gateway):
    with browser() as page:
        open_page(page, gateway, "avatar=demo")
        gateway.stop()
        wait_until(page, "window.lipsync.connection === 'closed'")
        assert "reconnecting" in page.inner_text("#connection")
        gateway.start()
        wait_until(page, "window.lipsync.connection === 'open'", 30)


def silent_flac(path: Path, seconds: int) -> bytes:
    """A small file that decodes to a lot of audio (an hour of silence is 176 KB of FLAC)."""
    soundfile.write(path, np.zeros(seconds * framing.SAMPLE_RATE, np.float32), framing.SAMPLE_RATE, format="FLAC")
    return path.read_bytes()


def error_of(replies: list) -> str:
    reply = json.loads(replies[-1])
    assert reply["type"] == "error", reply
    return reply["message"]


def test_file_mode_refuses_audio_past_its_limit(gateway, tmp_path):
    replies = asyncio.run(raw_session(gateway, {"type": "file", "avatar": "demo"}, [silent_flac(tmp_path / "h", 3600)]))
    assert "the file is longer than this gateway's limit of 300 s" in error_of(replies)


@pytest.mark.parametrize(
    "listing",
    [
        "ffconcat version 1.0\nfile '{wav}'\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile://{wav}\n#EXT-X-ENDLIST\n",
    ],
    ids=["concat list", "HLS playlist"],
)
def test_file_mode_opens_no_other_file(gateway, listing):
    body = listing.format(wav=ROOT / "assets" / "sample.wav").encode()
    replies = asyncio.run(raw_session(gateway, {"type": "file", "avatar": "demo"}, [body]))
    assert "could not read the file as audio (WAV, FLAC" in error_of(replies)


def test_any_version_gets_an_answer(gateway):
    replies = asyncio.run(raw_session(gateway, {"type": "file", "avatar": "demo", "version": 2**64}, []))
    assert "bad request: version: a number >= 1" in error_of(replies)
    wav = (ROOT / "assets" / "sample.wav").read_bytes()
    replies = asyncio.run(raw_session(gateway, {"type": "file", "avatar": "demo", "version": 2**31 - 1}, [wav]))
    assert "2147483647" in error_of(replies)  # the server's refusal, not a silent session


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a process, in MB: the kernel's own peak (VmHWM), which
    psutil does not read and sampling would miss."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


async def hostile(gateway: Gateway, upload: bytes) -> str:
    """One page that uploads `upload` in file mode: the gateway's answer, or its refusal."""
    try:
        replies = await raw_session(gateway, {"type": "file", "avatar": "demo"}, [upload])
    except aiohttp.WSServerHandshakeError as error:
        return f"refused {error.status}"
    return error_of(replies)


# What the gateway may grow by: per page (--max-sessions 16) an upload's message (at most 32 MB)
# and its decoded audio (at most --max-file-seconds, 300 s: 19 MB at 16 kHz).
GATEWAY_BOUND_MB = 16 * (32 + 19)


def test_fifty_hostile_pages_stay_within_the_gateways_memory_bound(grpc_url, tmp_path):
    fresh = Gateway(grpc_url, tmp_path / "gateway.log").start()
    try:
        baseline, _ = peak_rss_mb(fresh.process.pid)
        upload = silent_flac(tmp_path / "hour.flac", 3600)

        async def fifty():
            return await asyncio.gather(*(hostile(fresh, upload) for _ in range(50)))

        answers = asyncio.run(fifty())
        _, peak = peak_rss_mb(fresh.process.pid)
        served = [a for a in answers if not a.startswith("refused")]
        assert len(served) <= 16 and set(answers) - set(served) <= {"refused 503"}
        assert all("longer than this gateway's limit" in a for a in served)
        assert peak - baseline < GATEWAY_BOUND_MB, f"grew {peak - baseline:.0f} MB from {baseline:.0f} MB"
        refused = len(answers) - len(served)
        print(f"gateway: {len(served)} served, {refused} refused; RSS {baseline:.0f} MB, peak {peak:.0f} MB")
        speech = (ROOT / "assets" / "sample.wav").read_bytes()
        replies = asyncio.run(raw_session(fresh, {"type": "file", "avatar": "demo"}, [speech]))
        assert json.loads(replies[-1])["type"] == "done"  # and it serves on
    finally:
        fresh.stop()


def unet_frames(grpc_url: str) -> int:
    """Frames the demo's latest version has made on the server so far."""
    return LipsyncClient(grpc_url).statistics()["avatar_demo/2"]["inferences"]


def quiet_frames(server, grpc_url: str) -> int:
    """The UNet's frame count once the server is idle: no frames admitted and not yet made
    (face_generator's gauge, which holds a request's frames until the compositor has encoded
    them) and no request queued at any model (Triton's own gauge)."""

    def idle() -> bool:
        metrics = server.metrics()
        return not metrics.total("lipsync_frames_in_flight") and not metrics.total("nv_inference_pending_request_count")

    waiting.until(idle, 120, "the server idle", interval_s=0.05)
    return unet_frames(grpc_url)


def test_a_cancelled_client_sends_nothing_more(server, grpc_url):
    """A long clip in one-second requests, two in flight, cancelled once its frames are being
    made: the call returns, and the server makes at most the frames of the requests in flight."""
    client = LipsyncClient(grpc_url)
    before = quiet_frames(server, grpc_url)
    audio = voice.speech(20.0, framing.SAMPLE_RATE, seed=8)
    frames = client.render_chunks(audio, framing.SAMPLE_RATE, "demo", chunk_seconds=1.0, max_in_flight=2)
    next(frames)
    at_cancel = unet_frames(grpc_url)
    client.cancel()
    with pytest.raises(Cancelled):
        list(frames)
    made = quiet_frames(server, grpc_url)
    assert made - at_cancel <= 2 * framing.FPS, f"{made - at_cancel} frames made after the cancel"
    assert made - before < framing.frame_count(len(audio)) // 2


def test_a_closed_page_stops_its_work_on_the_server(gateway, server, grpc_url):
    speech = (voice.speech(40.0, framing.SAMPLE_RATE, seed=9) * 32767).astype("<i2")
    wav = io.BytesIO()
    soundfile.write(wav, speech, framing.SAMPLE_RATE, format="WAV", subtype="PCM_16")
    before = quiet_frames(server, grpc_url)

    async def close_after_frames() -> int:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(gateway.url + "ws", headers={"Origin": gateway.url.rstrip("/")}) as ws:
                await ws.send_str(json.dumps({"type": "file", "avatar": "demo"}))
                await ws.send_bytes(wav.getvalue())
                received = 0
                async for message in ws:
                    received += message.type == aiohttp.WSMsgType.BINARY
                    if received == 30:
                        return unet_frames(grpc_url)
        raise AssertionError("the render ended before 30 frames")

    at_close = asyncio.run(close_after_frames())
    closed_at = time.monotonic()
    made = quiet_frames(server, grpc_url)
    # In flight when the page went: at most two requests of one second (25 frames each); the
    # rest of the 40 s (1000 frames) is never asked for.
    assert made - at_close <= 2 * framing.FPS, f"{made - at_close} frames made after the page closed"
    assert made - before < 200
    print(f"server quiet {time.monotonic() - closed_at:.2f} s after the page closed")
