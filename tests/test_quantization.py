"""`lipsync-server quantize`: an INT8 copy of an avatar's weights, added as a version only when its
output stays within the PSNR threshold of the float version's, and then served like any other."""

import io
import json

import numpy as np
import onnx
import pytest
from PIL import Image

from lipsync.client import LipsyncClient
from lipsync_protocol import framing
from lipsync_server import cli as server_cli
from lipsync_server.avatars import quality, quality_record, repository
from lipsync_server.networks import tensorrt_rules

pytestmark = pytest.mark.integration


def test_psnr_of_known_errors():
    image = np.full((4, 4, 3), 100, np.uint8)
    assert quality.psnr_db(image, image) == float("inf")
    # Every pixel off by 1: MSE 1, PSNR = 20 log10(255) = 48.13 dB.
    assert quality.psnr_db(image, image + 1) == pytest.approx(48.13, abs=0.01)


def test_int8_version_is_added_served_and_close_to_float(parity_avatar, server, grpc_url, speech, capsys):
    folder = server.repository / "avatar_parity"
    before = repository.versions(server.repository, "parity")
    # Version 2 holds default-initialised weights, whose output varies smoothly with the input.
    code = server_cli.main(
        [
            "quantize",
            "--url",
            grpc_url,
            "parity",
            "--from-version",
            "2",
            "--repository",
            str(server.repository),
            "--load",
        ]
    )
    assert code == 0, capsys.readouterr().err
    version = before[-1] + 1
    record = json.loads((folder / str(version) / quality_record.QUALITY_FILE).read_text())
    assert record["precision"] == "int8" and record["source_version"] == 2
    assert record["psnr_db"] >= quality_record.MIN_PSNR_DB
    assert tensorrt_rules.problems(onnx.load(str(folder / str(version) / "model.onnx"))) == []  # builds on GPU too
    assert f"version {version}: INT8" in capsys.readouterr().out

    client = LipsyncClient(grpc_url)
    audio = speech[0][:16000]
    float_frames = client.render(audio, 16000, "parity", version=2)
    int8_frames = client.render(audio, 16000, "parity", version=version)
    assert len(int8_frames) == len(float_frames) == framing.frame_count(len(audio))
    decoded = [np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in (float_frames[10], int8_frames[10])]
    assert quality.psnr_db(*decoded) >= quality_record.MIN_PSNR_DB


def test_int8_copy_below_the_threshold_is_refused(parity_avatar, server, capsys):
    # Version 1's calibrated random weights amplify any change: 1 LSB of input noise already
    # costs it more than 10 dB, so its INT8 copy cannot reach 35 dB and must not be added.
    before = repository.versions(server.repository, "parity")
    code = server_cli.main(["quantize", "parity", "--from-version", "1", "--repository", str(server.repository)])
    assert code == 2
    message = capsys.readouterr().err
    assert "INT8 copy of avatar 'parity' version 1 reaches" in message and "below the required 35.0 dB" in message
    assert repository.versions(server.repository, "parity") == before


def test_quantize_names_what_is_missing(server, capsys):
    assert server_cli.main(["quantize", "../etc", "--repository", str(server.repository)]) == 2
    assert "invalid avatar name '../etc'" in capsys.readouterr().err
    assert server_cli.main(["quantize", "nobody", "--repository", str(server.repository)]) == 2
    assert "avatar 'nobody' has no weight versions" in capsys.readouterr().err
