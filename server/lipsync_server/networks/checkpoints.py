"""Loads SyncTalk_2D checkpoints into the networks (weights_only=True: no code is unpickled).

- UNet: `<epoch>.pth`, a plain state_dict; multi-GPU training adds a `module.` prefix. The
  width is read from the first layer's weights (32 channels: the reference network).
- audio encoder: the bare Sequential's state_dict (`0.conv_block.0.weight`, ...).
"""

from pathlib import Path

import torch

from .audio_encoder import AudioEncoder
from .unet import LipSyncUNet


class CheckpointError(ValueError):
    pass


WIDTH_KEY = "inc.inconv.0.conv.6.weight"  # the first level's 1x1 projection: [base, hidden, 1, 1]


def load_unet(path: Path) -> LipSyncUNet:
    state = _state_dict(path)
    width = state.get(WIDTH_KEY)
    model = LipSyncUNet(width.shape[0]) if width is not None and width.ndim == 4 else LipSyncUNet()
    _load_into(model, state, path)
    return model.eval()


def load_audio_encoder(path: Path) -> AudioEncoder:
    model = AudioEncoder()
    _load_into(model.audio_encoder, _state_dict(path), path)
    return model.eval()


def _state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path}: not a loadable PyTorch checkpoint ({error})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state_dict, found {type(state).__name__}")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def _load_into(module: torch.nn.Module, state: dict, path: Path) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{key}: checkpoint {tuple(state[key].shape)} vs network {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(state))
        if tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    if missing or unexpected or mismatched:
        problems = [
            f"missing keys: {_few(missing)}" if missing else "",
            f"unexpected keys: {_few(unexpected)}" if unexpected else "",
            f"shape mismatches: {_few(mismatched)}" if mismatched else "",
        ]
        raise CheckpointError(f"{path} does not fit {type(module).__name__}: " + "; ".join(p for p in problems if p))
    module.load_state_dict(state)


def _few(items: list[str], shown: int = 5) -> str:
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more
