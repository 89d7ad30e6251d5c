"""Overload: requests beyond what face_generator takes (8 per execute and 8 queued, at most 400
frames in the works, done within the request's MAX_WAIT_MS) are refused at once with
UNAVAILABLE, and every request that is taken returns all its frames; the wait counts the
compositor's work too, when it is the slow step."""

import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from lipsync.client import LipsyncClient
from lipsync_protocol import framing
from lipsync_server.avatars import repository
from lipsync_server.avatars.media import AvatarMedia, media_dir

pytestmark = pytest.mark.integration
AUDIO = (0.1 * np.sin(np.arange(24000) / 7)).astype(np.float32)  # 36 frames
FRAMES = framing.frame_count(len(AUDIO))


def outcome(client: LipsyncClient, start: int, max_wait_s: float | None = None) -> tuple[int | str, float]:
    """The frame count of a render, or its error's status and message; and its seconds."""
    began = time.monotonic()
    try:
        frames = client.render(AUDIO, 16000, "demo", start_frame=start, max_wait_s=max_wait_s)
        return len(frames), time.monotonic() - began
    except InferenceServerException as error:
        return f"{error.status()} {error.message()}", time.monotonic() - began


def test_overload_is_refused_without_work_and_accepted_requests_complete(grpc_url):
    client = LipsyncClient(grpc_url)
    before = demo_work(client)
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda start: outcome(client, start), range(20)))
    served = [result for result, _ in results if result == FRAMES]
    rejected = [result for result, _ in results if result != FRAMES]
    assert len(served) >= 1 and len(rejected) >= 1, results
    for result in rejected:
        assert result.startswith("StatusCode.UNAVAILABLE"), result
        assert "Exceeds maximum queue size" in result or "server busy:" in result, result
    # Refused before any work: the UNet made the served requests' frames and no others, and the
    # compositor saw only them. (How soon a refusal returns depends on the CPU the steps before
    # face_generator share with the UNet, so it is not what is checked.)
    assert demo_work(client) == (before[0] + len(served) * FRAMES, before[1] + len(served)), results
    assert len(client.render(AUDIO, 16000, "demo")) == FRAMES  # and the server serves on


def demo_work(client: LipsyncClient) -> tuple[int, int]:
    """The frames the demo's UNet has made (all versions) and the clips the compositor has made."""
    stats = client.statistics()
    frames = sum(entry["inferences"] for model, entry in stats.items() if model.startswith("avatar_demo/"))
    return frames, stats["compositor/1"]["requests"]


def test_requests_that_would_wait_past_their_bound_are_refused(server, grpc_url):
    client = LipsyncClient(grpc_url)
    assert len(client.render(AUDIO, 16000, "demo")) == FRAMES  # the server has measured its rate
    busy_before = server.metrics().total("lipsync_requests_refused_total", reason="busy")
    # 8 requests of 36 frames stay under the 400-frame limit: only the wait bound refuses them.
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda start: outcome(client, start, max_wait_s=0.3), range(8)))
    served = [result for result, _ in results if result == FRAMES]
    refused = [result for result, _ in results if result != FRAMES]
    assert served and refused, results
    for result in refused:
        assert result.startswith("StatusCode.UNAVAILABLE") and "server busy: this request's" in result, result
        assert "past what is left of its bound" in result and "MAX_WAIT_MS" in result, result
    # Each refusal is counted once, as busy, by the model that refused it.
    busy = server.metrics().total("lipsync_requests_refused_total", reason="busy")
    assert busy - busy_before == len(refused), results


@pytest.fixture(scope="module")
def big_frames(server, grpc_url) -> str:
    """The trained demo with 5K background frames: the compositor (paste and JPEG) is then the
    slow step, as on a GPU server. Returns its name."""
    demo = AvatarMedia(media_dir(server.repository, "demo"))
    scale = 4
    frames = [cv2.resize(demo.background(i), None, fx=scale, fy=scale) for i in range(16)]
    rects = [[v * scale for v in demo.rects[i]] for i in range(16)]
    folder = server.repository / "avatar_bigframes"
    (folder / "2").mkdir(parents=True)
    shutil.copyfile(server.repository / "avatar_demo" / "2" / "model.onnx", folder / "2" / "model.onnx")
    shutil.copyfile(server.repository / "avatar_demo" / "2" / "model.py", folder / "2" / "model.py")
    repository.write_media(server.repository, "bigframes", frames, rects)
    LipsyncClient(grpc_url).load_avatar("bigframes")
    return "bigframes"


def test_a_slow_compositor_counts_in_the_wait_bound(grpc_url, big_frames):
    client = LipsyncClient(grpc_url)
    models = ("compositor/1", f"avatar_{big_frames}/2")
    before = {model: compute(client, model) for model in models}
    assert len(client.render(AUDIO, 16000, big_frames)) == FRAMES  # the rate, measured end to end
    # This render's compute time a frame in each step, from Triton's statistics.
    per_frame = {}
    for model in models:
        (ms, frames), (ms_before, frames_before) = compute(client, model), before[model]
        per_frame[model] = (ms - ms_before) / (frames - frames_before)
    assert per_frame["compositor/1"] > per_frame[models[1]], per_frame  # the slow step, here
    # The UNet would make these frames at once; the compositor would make them wait.
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda start: big_outcome(client, big_frames, start), range(8)))
    served = [result for result, _ in results if result == FRAMES]
    refused = [result for result, _ in results if result != FRAMES]
    assert served and refused, results
    for result in refused:
        assert result.startswith("StatusCode.UNAVAILABLE") and "server busy: this request's" in result, result
    print(f"ms a frame {per_frame}; {len(served)} served, {len(refused)} refused")


def compute(client: LipsyncClient, model: str) -> tuple[float, int]:
    """A model's compute time so far (ms) and the frames it was for: the compositor takes a
    clip a request, an avatar's UNet counts frames (its batches)."""
    stats = client.statistics().get(model, {"avg_compute_ms": 0.0, "requests": 0, "inferences": 0})
    frames = stats["requests"] * FRAMES if model.startswith("compositor") else stats["inferences"]
    return stats["avg_compute_ms"] * stats["requests"], frames


def big_outcome(client: LipsyncClient, avatar: str, start: int) -> tuple[int | str, float]:
    began = time.monotonic()
    try:
        return len(client.render(AUDIO, 16000, avatar, start_frame=start, max_wait_s=0.3)), time.monotonic() - began
    except InferenceServerException as error:
        return f"{error.status()} {error.message()}", time.monotonic() - began
