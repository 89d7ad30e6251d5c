"""The demo's training data and trainer: the drawn mouth follows the speech, a short training
run writes SyncTalk_2D checkpoints the importer serves, and the committed demo weights are the
ones that keep held-out speech in sync."""

from pathlib import Path

import numpy as np
import torch

from lipsync_server.audio import mel_pipeline
from lipsync_server.avatars import importer, repository
from lipsync_server.calibration import mouth_track, voice
from lipsync_server.demo import synthetic, training
from lipsync_server.networks import checkpoints
from lipsync_server.networks.unet import LipSyncUNet

ROOT = Path(__file__).resolve().parents[1]


def test_dataset_mouth_follows_the_speech(tmp_path):
    count = training.make_dataset(tmp_path / "ds", seconds=3.0, seed=3)
    data = training.load_dataset(tmp_path / "ds")
    assert len(data.crops) == count == len(data.shapes)
    areas = [synthetic.dark_area(crop, data.mouth) for crop in data.crops]  # BGR crops: the measure ignores order
    opening, _ = mouth_track.mouth_shapes(mel_pipeline.mel_of(voice.speech(3.0, seed=3)))
    assert np.allclose(data.shapes[:, 0], opening, atol=0.02)  # aud.wav holds 16-bit samples
    assert np.corrcoef(areas, opening)[0, 1] > 0.9
    closed = data.shapes[:, 0] == 0
    assert closed.any() and max(a for a, c in zip(areas, closed) if c) == 0


def test_short_training_writes_importable_half_precision_checkpoints(tmp_path):
    training.make_dataset(tmp_path / "ds", seconds=1.0, seed=3)
    data = training.load_dataset(tmp_path / "ds")
    torch.manual_seed(0)
    encoder = training.train_audio_encoder(data, steps=2, batch=4, log=lambda _: None)
    features = training.audio_features(encoder, data.mel)
    assert features.shape == (len(data.crops), 32, 16, 16)
    unet = training.train_unet(data, features, steps=2, base_channels=4, batch=2, log=lambda _: None)
    unet_path = training.save_half(unet, tmp_path / "ckpt" / "1.pth")
    encoder_path = training.save_half(encoder.audio_encoder, tmp_path / "ckpt" / "audio_visual_encoder.pth")
    assert torch.load(unet_path, weights_only=True)["outc.conv.weight"].dtype == torch.float16

    loaded = checkpoints.load_unet(unet_path)
    assert loaded.base_channels == 4
    face, audio = torch.rand(1, 6, 320, 320), features[:1]
    with torch.no_grad():
        assert torch.allclose(loaded(face, audio), unet(face, audio), atol=2e-2)
    checkpoints.load_audio_encoder(encoder_path)

    repo = tmp_path / "repo"
    synthetic.write_dataset(tmp_path / "avatar", synthetic.avatar_frames(4))
    importer.import_avatar(repo, "talker", dataset=tmp_path / "avatar")
    assert importer.import_unet(repo, "talker", unet_path) == 1
    assert repository.versions(repo, "talker") == [1]


def test_committed_demo_weights_are_small_and_keep_held_out_speech_in_sync():
    """Measured here, from the committed checkpoints: the figure `make train` reports in
    training.json, in process (tests/test_lip_sync.py measures it through the server)."""
    folder = ROOT / "checkpoints"
    unet = checkpoints.load_unet(max((folder / "demo").glob("*.pth"), key=lambda p: int(p.stem)))
    encoder = checkpoints.load_audio_encoder(folder / "audio_visual_encoder.pth")
    assert unet.base_channels < LipSyncUNet().base_channels  # narrower than the reference
    assert sum(p.stat().st_size for p in folder.rglob("*.pth")) <= 10 * 2**20
    assert training.demo_held_out_sync(unet.float(), encoder.float()) > 0.9
