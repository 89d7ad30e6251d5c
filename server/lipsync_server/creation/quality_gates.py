"""Checks of a trained person's UNet on the held-out part of their video, before it is served:

- reconstruction: PSNR of the generated face against the real one (the network's 320x320 view),
  each held-out frame made from its own masked frame, another frame as reference and its audio;
- lip sync: the generated face pasted into its frame and read by the face mesh: the mouth's
  opening (inner lips apart, over the face's width) follows the speech level (Pearson r), and
  stays closed in the pauses as the real person's does;
- the person's sync network (sync_network.py): its mean score of the generated mouths with
  their audio, against its score of the real mouths with theirs and with audio 0.4 s off.
  Reported, not a gate: no bar is set until it has been measured on networks known good and
  bad (perf/README.md).

The bars are the person's own where the person sets them. How closely a mouth's opening follows
loudness depends on the person and the words, so the generated mouths' r must reach
MIN_SYNC_SHARE of the real held-out frames' r (a bar the real frames cannot pass would measure
the video, not the avatar); a video whose own mouth follows its speech under MIN_REAL_SYNC_R
cannot teach lip sync and is refused as such. In pauses the generated mouth may open at most
the real one's plus MAX_PAUSE_OPENING_EXTRA. PSNR stays absolute, MIN_PSNR_DB: a face with the
mouth region wrong but the rest right already has about 25 dB, so below 28 the face itself is
off, whoever the person is.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from lipsync_server.avatars import compositing
from lipsync_server.calibration import mouth_track
from lipsync_server.networks.exported import face_mask
from lipsync_server.networks.unet import LipSyncUNet

from . import crop_track, dataset, sync_network
from .face_tracker import FaceTracker
from .sync_network import SyncNetwork

MIN_PSNR_DB = 28.0
MIN_SYNC_SHARE = 0.9  # of the real frames' r that the generated mouths' must reach
MIN_REAL_SYNC_R = 0.4  # the real frames' own r below which the video cannot teach lip sync
MAX_PAUSE_OPENING_EXTRA = 0.02
OFF_SYNC_FRAMES = 10  # 0.4 s: audio that does not belong to a mouth
INNER_LIP_TOP, INNER_LIP_BOTTOM = 13, 14
PAUSE_LEVEL = mouth_track.CLOSED_LEVEL  # the speech level below which the mouth is closed


@dataclass
class Report:
    frames: int  # held-out frames checked
    psnr_db: float
    sync_r: float
    pause_opening: float  # mean opening in the pauses, generated
    real_pause_opening: float  # the same on the real frames
    real_sync_r: float  # the real frames' own opening against the speech: what r can reach
    failed: list[str]  # the gates not passed
    sync_score: float | None = None  # the sync network's mean score, generated (None: no network)
    real_sync_score: float | None = None  # the same for the real mouths
    # the real mouths with the audio of OFF_SYNC_FRAMES before: how well the network tells them apart
    real_off_sync_score: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def check(
    work: Path, unet: LipSyncUNet, features: np.ndarray, sync: SyncNetwork | None = None, seed: int = 0
) -> Report:
    """`features`: training.encoder_features() of the work folder; `sync`: the person's sync
    network (training.train_sync())."""
    info = dataset.read(work)
    held_out = info.held_out_frames()
    training = info.training_frames()
    if len(held_out) < 10:
        raise ValueError(f"{work}: {len(held_out)} usable held-out frames; the checks need 10")
    import soundfile

    from lipsync_server.audio import mel_pipeline

    audio, rate = soundfile.read(work / "aud.wav", dtype="float32")
    level, _ = mouth_track.frame_levels(mel_pipeline.mel_of(audio, rate))
    references = np.random.default_rng(seed).choice(training, len(held_out))
    mask = face_mask()
    tracker = FaceTracker()
    psnrs, made, real = [], [], []
    generated_faces, real_faces = [], []
    unet.eval()
    for n, reference in zip(held_out, references):
        target = cv2.imread(str(work / "faces" / f"{n}.png"))
        out = generated_face(work, unet, features, n, reference, mask)
        generated = (out.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        psnrs.append(cv2.PSNR(generated, target))
        generated_faces.append(out)
        real_faces.append(_tensor(target)[0])
        frame = cv2.imread(str(work / "frames" / f"{n}.jpg"))
        real.append(_opening(tracker, frame))
        made.append(_opening(tracker, compositing.paste_face(frame, info.rects[n], generated)))
    levels = level[held_out]
    pauses = levels < PAUSE_LEVEL
    report = Report(
        frames=len(held_out),
        psnr_db=float(np.mean(psnrs)),
        sync_r=_pearson(made, levels),
        pause_opening=float(np.mean(np.array(made)[pauses])) if pauses.any() else 0.0,
        real_pause_opening=float(np.mean(np.array(real)[pauses])) if pauses.any() else 0.0,
        real_sync_r=_pearson(real, levels),
        failed=[],
    )
    if sync is not None:
        sync = sync.cpu()  # training moved it to its device; the checks run here
        box, audio = sync_network.mouth_box(info), torch.from_numpy(features[held_out])
        with torch.no_grad():
            report.sync_score = float(sync(sync_network.mouths(torch.stack(generated_faces), box), audio).mean())
            real_mouths = sync_network.mouths(torch.stack(real_faces), box)
            report.real_sync_score = float(sync(real_mouths, audio).mean())
            earlier = torch.from_numpy(features[[max(n - OFF_SYNC_FRAMES, 0) for n in held_out]])
            report.real_off_sync_score = float(sync(real_mouths, earlier).mean())
    report.failed = failures(report)
    return report


def failures(report: Report) -> list[str]:
    """The gates a report does not pass, each with its figures."""
    failed = []
    if report.psnr_db < MIN_PSNR_DB:
        failed.append(f"reconstruction: {report.psnr_db:.1f} dB PSNR, the bar is {MIN_PSNR_DB:g}")
    if not report.real_sync_r >= MIN_REAL_SYNC_R:
        failed.append(
            f"the video: its own mouth follows its speech at r {report.real_sync_r:.2f}, under {MIN_REAL_SYNC_R:g}: "
            "it cannot teach lip sync (a clearer view of the mouth, more speech)"
        )
    elif not report.sync_r >= MIN_SYNC_SHARE * report.real_sync_r:
        bar = MIN_SYNC_SHARE * report.real_sync_r
        failed.append(
            f"lip sync: r {report.sync_r:.2f} against the speech level, the bar is {bar:.2f} "
            f"({MIN_SYNC_SHARE:g} x the real frames' {report.real_sync_r:.2f})"
        )
    if report.pause_opening > report.real_pause_opening + MAX_PAUSE_OPENING_EXTRA:
        failed.append(
            f"closed in pauses: opening {report.pause_opening:.3f}, the real person's {report.real_pause_opening:.3f}"
        )
    return failed


def generated_face(
    work: Path, unet: LipSyncUNet, features: np.ndarray, n: int, reference: int, mask: torch.Tensor
) -> torch.Tensor:
    """[3, 320, 320] in [0, 1], BGR: frame n made from its own masked face, another frame's face
    as reference and its audio features, as served."""
    target = _tensor(cv2.imread(str(work / "faces" / f"{n}.png")))
    face = torch.cat([_tensor(cv2.imread(str(work / "faces" / f"{reference}.png"))), target * mask], 1)
    with torch.no_grad():
        return unet(face, torch.from_numpy(features[n : n + 1]))[0]


def _tensor(bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(bgr).permute(2, 0, 1)[None].float() / 255.0


def _opening(tracker: FaceTracker, bgr: np.ndarray) -> float:
    """Inner lips apart over the face's width, by the face mesh (nan where it finds no face)."""
    # Each frame on its own: the pasted face must stand by itself.
    tracked = tracker.track(np.ascontiguousarray(bgr[..., ::-1]), follow=False)
    if tracked.points is None:
        return float("nan")
    points = tracked.points[:, :2]
    width = np.linalg.norm(points[crop_track.SIDE_RIGHT] - points[crop_track.SIDE_LEFT])
    return float(np.linalg.norm(points[INNER_LIP_BOTTOM] - points[INNER_LIP_TOP]) / width)


def _pearson(values, levels: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    keep = np.isfinite(values)
    if keep.sum() < 3 or np.std(values[keep]) == 0:
        return 0.0
    return float(np.corrcoef(values[keep], levels[keep])[0, 1])
