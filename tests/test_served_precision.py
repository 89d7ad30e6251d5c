"""What the CPU profile serves each avatar version with, as the server's metrics say, and the
quality of a bf16 version against the same version served in fp32 (on a CPU with native bf16)."""

import shutil

import numpy as np
import pytest

from lipsync.client import LipsyncClient
from lipsync_server import runtimes
from lipsync_server.avatars import quality, quality_record
from lipsync_server.demo import synthetic
from lipsync_server.model_configs import set_parameters

pytestmark = pytest.mark.integration


def test_every_cpu_model_says_what_runs_it(server, grpc_url):
    LipsyncClient(grpc_url).wait_until_ready()
    seen = runtimes.served(server.metrics())
    assert {("avatar_demo", 1), ("avatar_demo", 2)} <= set(seen)
    encoder = [how for (model, _), how in seen.items() if model == "audio_encoder"]
    assert encoder and all(how.endswith(f" {runtimes.FP32}") for how in encoder), seen
    # The demo's versions both reach the bf16 bar: where the CPU has bf16 they run on whichever
    # candidate measured fastest at their first load (runtime_choice: OpenVINO in bf16 and in
    # fp32, ONNX Runtime in fp32); elsewhere in fp32. Never a precision they were not allowed.
    candidates = {f"{runtimes.OPENVINO} {runtimes.FP32}", f"{runtimes.ONNXRUNTIME} {runtimes.FP32}"}
    if runtimes.has_native_bf16():
        candidates.add(f"{runtimes.OPENVINO} {runtimes.BF16}")
    for version in (1, 2):
        served = seen[("avatar_demo", version)]
        assert served in candidates, served
        memory = server.metrics().total("lipsync_model_memory_bytes", model="avatar_demo", version=str(version))
        assert memory > 50 * 2**20, memory  # a process with a runtime and a UNet in it


@pytest.fixture(scope="module")
def demo_bf16(server, grpc_url) -> str:
    """The demo avatar again, forced to OpenVINO in bf16 by its config. Returns its name."""
    copy = server.repository / "avatar_demobf16"
    shutil.copytree(server.repository / "avatar_demo", copy)
    set_parameters(copy / "configs" / "cpu.pbtxt", runtime="openvino", precision="bf16")
    LipsyncClient(grpc_url).load_avatar("demobf16")
    return "demobf16"


@pytest.mark.skipif(not runtimes.has_native_bf16(), reason="this CPU has no native bf16")
@pytest.mark.parametrize("version", [synthetic.TRAINED_VERSION, synthetic.BENCHMARK_VERSION])
def test_served_bf16_reaches_the_bar_against_served_fp32(demo_bf16, demo_fp32, grpc_url, speech, version):
    audio = speech[0][:16000]
    client = LipsyncClient(grpc_url)
    as_served = np.stack(client.render_faces(audio, 16000, demo_bf16, version))
    in_fp32 = np.stack(client.render_faces(audio, 16000, demo_fp32, version))
    pixels = [np.clip(np.round(faces * 255), 0, 255).astype(np.uint8) for faces in (as_served, in_fp32)]
    assert quality.psnr_db(*pixels) >= quality_record.MIN_PSNR_DB
    assert not np.array_equal(*pixels)  # they are two precisions, not one
