"""Trains the demo's audio encoder and UNet on a SyncTalk_2D dataset of the synthetic person.

Two stages, as SyncTalk_2D trains its networks separately:
1. the audio encoder learns, per mel window, the mouth shape the dataset shows for it (a linear
   head on its 512-vector regresses (opening, width); the head is dropped afterwards);
2. the UNet learns the frame from a reference crop (another, random frame: its mouth tells
   nothing), the masked frame and the frame's audio features from the trained encoder, as the
   server computes them. The loss is L1, weighted up inside the mouth, the only part the audio
   decides (SyncTalk_2D adds perceptual and sync losses; on drawn faces L1 is enough).
Checkpoints are written in SyncTalk_2D's formats, half precision (the importer reads either).
"""

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import soundfile
import torch
from torch import nn

from lipsync_protocol import framing
from lipsync_server.audio import mel_pipeline
from lipsync_server.audio.encoder_inputs import encoder_inputs
from lipsync_server.avatars import compositing, importer
from lipsync_server.calibration import mouth_track, voice
from lipsync_server.networks import unet_training
from lipsync_server.networks.audio_encoder import AudioEncoder
from lipsync_server.networks.exported import ServingAudioEncoder, ServingUNet
from lipsync_server.networks.unet import LipSyncUNet

from . import synthetic

UNET_BATCH = 8
# Speech never trained on (seeds 7 and 8): the sync test's clip, with a pause from 3.0 to 4.4 s.
HELD_OUT_SEED, HELD_OUT_PAUSE = 7, (3.0, 4.4)


def held_out_speech() -> np.ndarray:
    (start, end), after = HELD_OUT_PAUSE, 4.0
    return voice.speech_with_pause(start, end - start, after, framing.SAMPLE_RATE, seed=HELD_OUT_SEED)


@dataclass
class Dataset:
    crops: np.ndarray  # [F, 320, 320, 3] uint8 BGR, the network's view of every frame
    mel: np.ndarray  # [T, 80] of aud.wav
    shapes: np.ndarray  # [F, 2] (opening, width) of the mouth drawn in each frame
    mouth: tuple[int, int, int, int]  # the mouth's (x1, y1, x2, y2) inside the 320x320 crop


def make_dataset(folder: Path, seconds: float, seed: int) -> int:
    """The synthetic person speaking `seconds` of synthetic speech, in SyncTalk_2D's layout."""
    audio = voice.speech(seconds, framing.SAMPLE_RATE, seed=seed)
    opening, width = mouth_track.mouth_shapes(mel_pipeline.mel_of(audio))
    frames = synthetic.avatar_frames(len(opening), seed=seed, mouths=zip(opening, width))
    return synthetic.write_dataset(folder, frames, audio)


def load_dataset(folder: Path) -> Dataset:
    images, rects = importer.read_dataset(folder)
    crops = np.stack([compositing.face_input(cv2.imread(str(path)), rect) for path, rect in zip(images, rects)])
    audio, rate = soundfile.read(folder / "aud.wav", dtype="float32")
    mel = mel_pipeline.mel_of(audio, rate)
    opening, width = mouth_track.mouth_shapes(mel)
    if len(opening) != len(crops):
        raise ValueError(f"{folder}: aud.wav gives {len(opening)} frames, full_body_img has {len(crops)}")
    return Dataset(crops, mel, np.stack([opening, width], axis=1).astype(np.float32), _mouth_in_crop(rects[0]))


def train_audio_encoder(data: Dataset, steps: int, batch: int = 64, log=print) -> AudioEncoder:
    encoder, head = AudioEncoder(), nn.Linear(512, 2)
    windows = _windows(data.mel)  # [N, 1, 80, 16]; window i is shown in frame i + 1
    targets = torch.from_numpy(data.shapes[1 : len(windows) + 1])
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=steps)
    encoder.train()
    for step in range(steps):
        pick = torch.randint(len(windows), (batch,))
        loss = nn.functional.mse_loss(head(encoder(windows[pick])), targets[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"encoder step {step}: mse {loss.item():.4f}")
    return encoder.eval()


def audio_features(encoder: AudioEncoder, mel: np.ndarray) -> torch.Tensor:
    """[F, 32, 16, 16]: what the server's audio_encoder model computes for this mel."""
    with torch.no_grad():
        inputs = encoder_inputs(mel)
        return ServingAudioEncoder(encoder).eval()(*(torch.from_numpy(inputs[name]) for name in inputs))[0]


def train_unet(
    data: Dataset,
    features: torch.Tensor,
    steps: int,
    base_channels: int,
    batch: int = UNET_BATCH,
    seed: int = 0,
    log=print,
) -> LipSyncUNet:
    generator = torch.Generator().manual_seed(seed)
    # Module.to takes memory_format; torch's type stubs leave it out.
    unet = LipSyncUNet(base_channels).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(unet.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.15)
    crops = torch.from_numpy(data.crops).permute(0, 3, 1, 2)  # uint8 [F, 3, 320, 320] BGR
    training = unet_training.Step(unet, unet_training.mouth_weight(data.mouth))
    unet.train()
    started = time.monotonic()
    for step in range(steps):
        target_ids = torch.randint(len(crops), (batch,), generator=generator)
        reference_ids = torch.randint(len(crops), (batch,), generator=generator)
        target = crops[target_ids].float() / 255.0
        out = training.predict(crops[reference_ids].float() / 255.0, target, features[target_ids])
        loss = training.loss(out, target)
        unet_training.descend(loss, optimizer, schedule)
        if step % 25 == 0 or step == steps - 1:
            log(f"unet step {step}: weighted L1 {loss.item():.4f} ({time.monotonic() - started:.0f} s)")
    return unet.to(memory_format=torch.contiguous_format).eval()


def save_half(module: nn.Module, path: Path) -> Path:
    """A plain state_dict with float tensors in half precision (BatchNorm counters stay int)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.half() if v.is_floating_point() else v for k, v in module.state_dict().items()}
    torch.save(state, path)
    return path


def _windows(mel: np.ndarray) -> torch.Tensor:
    starts = framing.window_starts(mel.shape[0])
    return torch.from_numpy(np.stack([mel[s : s + framing.WINDOW].T[None] for s in starts]).astype(np.float32))


def _mouth_in_crop(rect) -> tuple[int, int, int, int]:
    """The drawn mouth's box (synthetic.mouth_box) in the network's 320x320 view of the crop."""
    x1, y1, x2, y2 = synthetic.mouth_box(rect)
    scale = compositing.CROP / (rect[2] - rect[0])
    box = [
        round((x1 - rect[0]) * scale),
        round((y1 - rect[1]) * scale),
        round((x2 - rect[0]) * scale),
        round((y2 - rect[1]) * scale),
    ]
    x1, y1, x2, y2 = (int(np.clip(v - compositing.BORDER, 0, 320)) for v in box)
    return x1, y1, x2, y2


def demo_held_out_sync(unet: LipSyncUNet, encoder: AudioEncoder) -> float:
    """held_out_sync on the idle demo person (the served avatar's frames) and the held-out speech."""
    idle = list(synthetic.avatar_frames(120))
    crops = np.stack([compositing.face_input(np.ascontiguousarray(frame[..., ::-1]), rect) for frame, rect in idle])
    return held_out_sync(unet, encoder, held_out_speech(), crops, _mouth_in_crop(idle[0][1]))


def held_out_sync(
    unet: LipSyncUNet,
    encoder: AudioEncoder,
    audio: np.ndarray,
    avatar_crops: np.ndarray,
    mouth: tuple[int, int, int, int],
) -> float:
    """Pearson r between the generated mouth's dark area and the speech level, frame by frame,
    in process (the sync test measures the same through the server)."""
    mel = mel_pipeline.mel_of(audio)
    level, _ = mouth_track.frame_levels(mel)
    features = audio_features(encoder, mel)
    graph, areas = ServingUNet(unet).eval(), []  # the served graph: masking, uint8 pixels
    with torch.no_grad():
        for start in range(0, len(features), 16):
            ids = [framing.pingpong(i, len(avatar_crops)) for i in range(start, min(start + 16, len(features)))]
            _, pixels = graph(torch.from_numpy(avatar_crops[ids]), features[start : start + len(ids)])
            areas += [synthetic.dark_area(p, mouth) for p in pixels.numpy()]
    return float(np.corrcoef(areas, level)[0, 1])
