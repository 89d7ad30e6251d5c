"""What the CPU profile serves each avatar version with, as the server says it in its log, and the
quality of a bf16 version against the same version served in fp32 (on a CPU with native bf16)."""

import numpy as np
import pytest

from lipsync.client import LipsyncClient
from lipsync_server.avatars import quality
from lipsync_server.backend import runtimes
from lipsync_server.demo import synthetic

pytestmark = pytest.mark.integration


def test_every_cpu_model_says_what_runs_it(server, grpc_url):
    LipsyncClient(grpc_url).wait_until_ready()
    seen = runtimes.served_from_log(server.log.read_text(errors="replace"))
    assert {("audio_encoder", 1), ("avatar_demo", 1), ("avatar_demo", 2)} <= set(seen)
    assert seen[("audio_encoder", 1)].endswith(" fp32")
    demo = runtimes.BF16 if runtimes.has_native_bf16() else runtimes.FP32  # both versions reach the bar
    assert seen[("avatar_demo", 1)].endswith(f" {demo}") and seen[("avatar_demo", 2)].endswith(f" {demo}")


@pytest.mark.skipif(not runtimes.has_native_bf16(), reason="this CPU has no native bf16")
@pytest.mark.parametrize("version", [synthetic.TRAINED_VERSION, synthetic.BENCHMARK_VERSION])
def test_served_bf16_reaches_the_bar_against_served_fp32(demo_fp32, grpc_url, speech, version):
    audio = speech[0][:16000]
    client = LipsyncClient(grpc_url)
    as_served = np.stack(client.render_faces(audio, 16000, "demo", version))
    in_fp32 = np.stack(client.render_faces(audio, 16000, demo_fp32, version))
    pixels = [np.clip(np.round(faces * 255), 0, 255).astype(np.uint8) for faces in (as_served, in_fp32)]
    assert quality.psnr_db(*pixels) >= quality.MIN_PSNR_DB
    assert not np.array_equal(*pixels)  # they are two precisions, not one
