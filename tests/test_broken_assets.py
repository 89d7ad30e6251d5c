"""Broken avatars fail to load with a message naming the problem, in the load call and in the
server log, while the other avatars keep serving."""

import json
import shutil

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from lipsync.client import LipsyncClient
from lipsync_protocol import framing

pytestmark = pytest.mark.integration


def replace_frame(media):
    (media / "frames" / "000003.jpg").write_bytes(b"not a jpeg")


def remove_frames(media):
    shutil.rmtree(media / "frames")


def remove_rects(media):
    (media / "rects.json").unlink()


def corrupt_rects(media):
    (media / "rects.json").write_text("[[600, 290, 810")


def move_rect_outside(media):
    rects = json.loads((media / "rects.json").read_text())
    rects[0] = [0, 0, 5000, 5000]
    (media / "rects.json").write_text(json.dumps(rects))


def truncate_weights(media):
    onnx = media.parent / "1" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:100_000])


def other_network(media):
    shutil.copyfile(media.parents[1] / "audio_encoder" / "1" / "model.onnx", media.parent / "1" / "model.onnx")


BREAKAGES = {
    "frame_not_jpeg": (replace_frame, "media unusable: frame 000003.jpg cannot be decoded"),
    "frames_missing": (remove_frames, "/media: 0 frames, 120 rects and 120 faces must be equal"),
    "rects_missing": (remove_rects, "media unusable: [Errno 2] No such file or directory"),
    "rects_corrupt": (corrupt_rects, "media unusable: rects.json is not valid JSON"),
    "rect_outside": (
        move_rect_outside,
        "media unusable: frame 000000.jpg: crop rectangle [0, 0, 5000, 5000] is not inside the 1280x720 frame",
    ),
    "weights_truncated": (truncate_weights, "version 1: model.onnx cannot be loaded"),
    "weights_other_network": (other_network, "version 1: model.onnx is not a lip-sync UNet"),
}


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_broken_avatar_fails_to_load_naming_the_problem_and_others_keep_serving(server, grpc_url, case):
    breakage, message = BREAKAGES[case]
    name = f"broken_{case}"
    target = server.repository / f"avatar_{name}"
    shutil.copytree(server.repository / "avatar_demo", target, ignore=shutil.ignore_patterns("2"))
    breakage(target / "media")
    client = LipsyncClient(grpc_url)
    try:
        with pytest.raises(InferenceServerException) as error:
            client.load_avatar(name)
        assert f"avatar '{name}'" in error.value.message() and message in error.value.message()
        log = server.log.read_text(errors="replace")
        assert f"avatar '{name}'" in log and message in log
        listed = {a.name: a for a in client.avatars()}[name]
        assert not listed.ready and message in listed.reasons[1]  # what `lipsync avatars` prints
        assert client.is_ready()  # one broken avatar does not take the server out of rotation
        audio = np.full(4000, 0.01, np.float32)
        assert len(client.render(audio, 16000, "demo")) == framing.frame_count(4000)
    finally:
        client.unload_avatar(name)  # what an operator does after a failed load
        shutil.rmtree(target)
