"""SyncTalk_2D checkpoint files load (weights_only) or fail with the keys that are wrong."""

import pytest
import torch

from lipsync_server.networks.audio_encoder import AudioEncoder
from lipsync_server.networks.checkpoints import CheckpointError, load_audio_encoder, load_unet
from lipsync_server.networks.unet import LipSyncUNet


def test_unet_checkpoint_with_and_without_module_prefix(tmp_path):
    torch.manual_seed(1)
    state = LipSyncUNet().state_dict()
    torch.save(state, tmp_path / "5.pth")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "6.pth")
    for name in ("5.pth", "6.pth"):
        loaded = load_unet(tmp_path / name).state_dict()
        assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_audio_encoder_checkpoint_is_the_bare_sequential(tmp_path):
    state = AudioEncoder().audio_encoder.state_dict()
    assert "0.conv_block.0.weight" in state and "0.conv_block.1.running_mean" in state
    torch.save(state, tmp_path / "audio_visual_encoder.pth")
    loaded = load_audio_encoder(tmp_path / "audio_visual_encoder.pth").audio_encoder.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_wrong_checkpoint_names_missing_unexpected_and_mismatched_keys(tmp_path):
    state = LipSyncUNet().state_dict()
    del state["outc.conv.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["outc.conv.weight"] = torch.zeros(4, 16, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as error:
        load_unet(tmp_path / "bad.pth")
    message = str(error.value)
    assert "missing keys: outc.conv.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "outc.conv.weight: checkpoint (4, 16, 1, 1) vs network (3, 16, 1, 1)" in message


def test_pickled_objects_are_refused(tmp_path):
    torch.save(LipSyncUNet(), tmp_path / "whole_model.pth")  # a pickled module, not a state_dict
    with pytest.raises(CheckpointError, match="not a loadable PyTorch checkpoint"):
        load_unet(tmp_path / "whole_model.pth")


def test_unet_width_is_read_from_the_checkpoint(tmp_path):
    state = LipSyncUNet(base_channels=16).state_dict()
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, tmp_path / "narrow.pth")
    loaded = load_unet(tmp_path / "narrow.pth")
    assert loaded.base_channels == 16 and loaded.inc.inconv[0].conv[6].weight.dtype == torch.float32
    state["up5.conv.double_conv.0.conv.0.weight"] = torch.zeros(3, 3, 1, 1)  # one layer of another width
    torch.save(state, tmp_path / "mixed.pth")
    with pytest.raises(CheckpointError, match="up5.conv.double_conv.0.conv.0.weight: checkpoint"):
        load_unet(tmp_path / "mixed.pth")
