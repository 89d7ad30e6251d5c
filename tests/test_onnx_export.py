"""The exported UNet serving graph equals the PyTorch network on the reference's inputs."""

import numpy as np
import onnxruntime as ort
import torch

from lipsync_server.networks.export import export_unet
from lipsync_server.networks.unet import LipSyncUNet


def test_unet_onnx_matches_pytorch_within_1e4(tmp_path):
    torch.manual_seed(7)
    unet = LipSyncUNet().eval()
    path = tmp_path / "model.onnx"
    export_unet(unet, path)
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 320, 320, 3), dtype=np.uint8)
    audio = rng.standard_normal((3, 32, 16, 16)).astype(np.float32)

    # The reference's input: BGR crop / 255, then the same with rows 5..309, cols 5..314 black.
    real = crops.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    masked = real.copy()
    masked[:, :, 5:310, 5:315] = 0
    with torch.no_grad():
        expected = unet(torch.from_numpy(np.concatenate([real, masked], axis=1)), torch.from_numpy(audio)).numpy()

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours, pixels = session.run(["FACE_RAW", "FACE_RGB"], {"FACE": crops, "AUDIO_FEATURES": audio})
    assert ours.shape == (3, 3, 320, 320)
    assert np.abs(ours - expected).max() < 1e-4

    # FACE_RGB is the reference's (raw * 255).astype(uint8), channels turned to RGB, last axis.
    assert pixels.dtype == np.uint8 and pixels.shape == (3, 320, 320, 3)
    np.testing.assert_array_equal(pixels, (ours * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)[..., ::-1])
