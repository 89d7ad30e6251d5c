"""Through the real tritonserver: the lipsync ensemble over gRPC and HTTP, with the project's
client and with plain tritonclient."""

import io

import av
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from keyed import inference_headers
from PIL import Image
from scipy import signal

from lipsync import cli
from lipsync.client import LipsyncClient
from lipsync.transport import infer_inputs
from lipsync_protocol import framing
from lipsync_server.demo import synthetic

pytestmark = pytest.mark.integration
HALF_SECOND = 8000


def expected_frames(samples: int, rate: int) -> int:
    return framing.frame_count(framing.resampled_length(samples, rate))


def plain_infer(protocol, url, audio, rate, avatar="demo", start=0, version=None, audio_type="FP32"):
    """A request built with tritonclient only, as any Triton user would."""
    module = grpcclient if protocol == "grpc" else httpclient
    client = module.InferenceServerClient(url)
    values = [
        ("AUDIO", np.asarray(audio).reshape(1, -1), audio_type),
        ("SAMPLE_RATE", np.array([[rate]], np.int32), "INT32"),
        ("AVATAR", np.array([[avatar.encode()]], np.object_), "BYTES"),
        ("START_FRAME", np.array([[start]], np.int64), "INT64"),
    ]
    if version is not None:
        values.append(("AVATAR_VERSION", np.array([[version]], np.int64), "INT64"))
    result = client.infer("lipsync", infer_inputs(module, values), headers=inference_headers(protocol))
    return [bytes(b) for b in result.as_numpy("FRAMES").reshape(-1)]


def decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(np.int16)


def outside_rect(shape, rect, margin=8) -> np.ndarray:
    x1, y1, x2, y2 = rect
    mask = np.ones(shape[:2], bool)
    mask[max(0, y1 - margin) : y2 + margin, max(0, x1 - margin) : x2 + margin] = False
    return mask


@pytest.fixture(scope="module")
def clients(grpc_url, http_url):
    return {"grpc": LipsyncClient(grpc_url), "http": LipsyncClient(http_url, "http")}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("samples, rate", [(HALF_SECOND, 16000), (20000, 44100)])
def test_frame_count_follows_the_rule(clients, urls, speech, protocol, samples, rate):
    audio = np.resize(speech[0], samples)
    ours = clients[protocol].render(audio, rate, "demo")
    plain = plain_infer(protocol, urls[protocol], audio, rate)
    assert len(ours) == len(plain) == expected_frames(samples, rate)


def test_content_above_8khz_does_not_reach_the_network(clients, speech, demo_fp32):
    # 48 kHz input with a loud 20 kHz tone: nothing of it fits at 16 kHz (DALI alone would fold
    # it to 4 kHz, right in the speech bands), so the faces equal those of the voice alone. The
    # network in fp32: bf16 rounding would add its own noise to the residue being measured.
    voice = signal.resample_poly(speech[0][:16000], 3, 1).astype(np.float32)
    tone = (0.3 * np.sin(2 * np.pi * 20_000 * np.arange(voice.size) / 48_000)).astype(np.float32)
    plain = np.stack(clients["grpc"].render_faces(voice, 48_000, demo_fp32))
    with_tone = np.stack(clients["grpc"].render_faces(voice + tone, 48_000, demo_fp32))
    difference = np.abs(with_tone - plain)  # the folded tone (4 kHz at 0.3) moves: max 0.40, mean 1.4e-3
    assert difference.max() < 0.1 and difference.mean() < 3e-4


def test_frames_at_a_smaller_size_are_the_full_frames_scaled(clients, speech, demo_media):
    """FRAME_SIZE: pasted and encoded at that size, what scaling the full frames gives (up to the
    crop's rounding and JPEG); never larger than the avatar's own."""
    audio, client = speech[0][:HALF_SECOND], clients["grpc"]
    full = client.render(audio, 16000, "demo", synthetic.BENCHMARK_VERSION)
    small = client.render(audio, 16000, "demo", synthetic.BENCHMARK_VERSION, frame_size=(640, 360))
    larger = client.render(audio, 16000, "demo", synthetic.BENCHMARK_VERSION, frame_size=(2560, 1440))
    assert len(small) == len(full) == len(larger)
    assert all(Image.open(io.BytesIO(jpeg)).size == (640, 360) for jpeg in small)
    assert larger == full
    for big, little in zip(full, small):
        scaled = np.asarray(Image.open(io.BytesIO(big)).convert("RGB").resize((640, 360), Image.Resampling.BOX))
        error = np.abs(scaled.astype(np.int16) - decode(little))
        assert error.mean() < 3 and np.percentile(error, 99) < 40, (error.mean(), np.percentile(error, 99))


def test_frames_are_background_sized_jpegs_following_the_loop(clients, speech, demo_media):
    start = len(demo_media) - 3  # crosses the end of the loop: 117, 118, 119, 118, ...
    # Version 1 (untrained) pastes a grey patch, unlike the background: the paste is visible.
    frames = clients["grpc"].render(
        speech[0][:HALF_SECOND], 16000, "demo", synthetic.BENCHMARK_VERSION, start_frame=start
    )
    for i, jpeg in enumerate(frames):
        image = Image.open(io.BytesIO(jpeg))
        assert image.format == "JPEG"
        index = framing.pingpong(start + i, len(demo_media))
        background = demo_media.background(index).astype(np.int16)
        assert image.size == (background.shape[1], background.shape[0])
        pixels = decode(jpeg)
        outside = outside_rect(pixels.shape, demo_media.rects[index])
        error = np.abs(pixels - background)[outside]
        assert error.mean() < 1.5 and np.percentile(error, 99.9) < 24, f"frame {i}: background changed outside the crop"
        x1, y1, x2, y2 = demo_media.rects[index]
        assert np.abs(pixels - background)[y1 + 20 : y2 - 20, x1 + 20 : x2 - 20].mean() > 10, "no face pasted"
    # Sensitivity: the head moves between frames, so a wrong background would not match.
    wrong = demo_media.background(framing.pingpong(start + 30, len(demo_media))).astype(np.int16)
    pixels = decode(frames[0])
    assert np.abs(pixels - wrong)[outside_rect(pixels.shape, demo_media.rects[start])].mean() > 1.5


def test_versions_give_different_faces(clients, speech, demo_media):
    audio = speech[0][:HALF_SECOND]
    one = decode(clients["grpc"].render(audio, 16000, "demo", version=1)[0])
    two = decode(clients["grpc"].render(audio, 16000, "demo", version=2)[0])
    latest = decode(clients["grpc"].render(audio, 16000, "demo")[0])
    x1, y1, x2, y2 = demo_media.rects[0]
    assert np.abs(one - two)[y1:y2, x1:x2].mean() > 3
    assert np.abs(latest - two).max() == 0


def test_same_audio_twice_gives_identical_frames(clients, urls, speech):
    audio = speech[0][HALF_SECOND : 2 * HALF_SECOND]
    assert clients["grpc"].render(audio, 16000, "demo", start_frame=5) == plain_infer(
        "http", urls["http"], audio, 16000, start=5
    )


def test_an_unloaded_avatar_loads_again_on_its_next_request(clients, speech):
    client, audio = clients["grpc"], speech[0][:4000]
    client.unload_avatar("demo")
    try:
        assert not {a.name: a for a in client.avatars()}["demo"].ready
        assert len(client.render(audio, 16000, "demo")) == expected_frames(4000, 16000)
        assert {a.name: a for a in client.avatars()}["demo"].versions == {1: "READY", 2: "READY"}
    finally:
        client.load_avatar("demo")


def test_chunked_rendering_equals_one_request_for_the_whole_clip(clients, speech, tmp_path):
    """Long renders stay in sync: 13 one-second chunks, three in flight, give the frames of one
    request, as many and identical, through the client and through the CLI."""
    import soundfile

    audio = np.tile(speech[0], 2)[: 13 * 16000]
    client = clients["grpc"]
    whole = client.render(audio, 16000, "demo", start_frame=2)
    assert len(whole) == expected_frames(len(audio), 16000) == 324
    assert list(client.render_chunks(audio, 16000, "demo", start_frame=2, chunk_seconds=1.0, max_in_flight=3)) == whole

    wav = tmp_path / "long.wav"
    soundfile.write(wav, audio, 16000, subtype="FLOAT")
    folder = tmp_path / "frames"
    assert (
        cli.main(
            [
                "--url",
                client.url,
                "render",
                str(wav),
                "--avatar",
                "demo",
                "--start-frame",
                "2",
                "--chunk-seconds",
                "1",
                "--in-flight",
                "3",
                "-o",
                str(folder),
            ]
        )
        == 0
    )
    assert [path.read_bytes() for path in sorted(folder.glob("*.jpg"))] == whole


def test_cli_renders_long_audio_at_any_rate_to_the_whole_clip_frame_count(grpc_url, tmp_path, speech):
    import soundfile

    audio = np.tile(speech[0], 2)[: 13 * 16000]
    resampled = av.AudioResampler(format="flt", layout="mono", rate=44100)
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = 16000
    at_44k = np.concatenate(
        [f.to_ndarray().reshape(-1) for f in (*resampled.resample(frame), *resampled.resample(None))]
    )
    wav = tmp_path / "long44k.wav"
    soundfile.write(wav, at_44k, 44100, subtype="FLOAT")
    output = tmp_path / "long.mp4"
    assert (
        cli.main(["--url", grpc_url, "render", str(wav), "--avatar", "demo", "--chunk-seconds", "2", "-o", str(output)])
        == 0
    )
    with av.open(str(output)) as container:
        assert sum(1 for _ in container.decode(container.streams.video[0])) == expected_frames(len(at_44k), 44100)


def test_statistics_and_health(clients):
    health = clients["http"].health()
    assert health["live"] and health["ready"] and health["avatars"]["demo"] == {1: "READY", 2: "READY"}
    stats = clients["grpc"].statistics()
    assert stats["lipsync/1"]["requests"] > 0 and stats["lipsync/1"]["avg_compute_ms"] > 0
    assert stats["avatar_demo/2"]["inferences"] >= stats["avatar_demo/2"]["executions"] > 0


def test_cli_renders_an_mp4_with_sound(grpc_url, tmp_path, speech):
    import soundfile

    wav = tmp_path / "speech.wav"
    soundfile.write(wav, speech[0][:16000], 16000)
    output = tmp_path / "out.mp4"
    assert cli.main(["--url", grpc_url, "render", str(wav), "--avatar", "demo", "-o", str(output)]) == 0
    with av.open(str(output)) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and sound.codec_context.name == "aac"
        assert sum(1 for _ in container.decode(video)) == expected_frames(16000, 16000)
        assert (video.codec_context.width, video.codec_context.height) == (1280, 720)


def test_cli_streams_a_pipe_into_jpegs(grpc_url, tmp_path, speech, monkeypatch, capsys):
    import io as stdio
    import sys

    pcm = (np.clip(speech[0][:16000], -1, 1) * 32767).astype("<i2").tobytes()
    monkeypatch.setattr(sys, "stdin", stdio.TextIOWrapper(stdio.BytesIO(pcm)))
    code = cli.main(
        ["--url", grpc_url, "stream", "-", "--avatar", "demo", "--chunk-ms", "200", "-o", str(tmp_path / "live")]
    )
    assert code == 0
    assert len(list((tmp_path / "live").glob("*.jpg"))) == expected_frames(16000, 16000)
    assert "first frame after" in capsys.readouterr().out


def test_cli_streams_a_file_into_an_mp4(grpc_url, tmp_path, speech):
    import soundfile

    wav = tmp_path / "speech.wav"
    soundfile.write(wav, speech[0][:12000], 16000)
    assert cli.main(["--url", grpc_url, "stream", str(wav), "--avatar", "demo", "-o", str(tmp_path / "live.mp4")]) == 0
    with av.open(str(tmp_path / "live.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == expected_frames(12000, 16000)
        assert container.streams.audio[0].codec_context.name == "aac"
