"""A plain video of a person talking to the camera becomes a served avatar version:

1. the video's sound and its pictures at 25 frames/s (video_input), refused at once where the
   pictures cannot teach a mouth (broken timestamps, too few distinct pictures, a frozen one);
2. the face tracked in every frame, its crop smoothed, the dataset written (dataset); refused
   where most frames show no usable face;
3. the person's UNet trained with the shared audio encoder (training; resumable);
4. the quality gates on the held-out part (quality_gates): below a bar nothing is added;
   what it made is shown in the work folder either way (showing: a contact sheet of the frames,
   the held-out speech generated beside real, report.md);
5. the avatar's media (the first time) and the new version, through the importer.

Everything it makes stays in the work folder (the user's: never deleted here); run again with
the same work folder, it goes on where it stopped.
"""

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from lipsync_protocol import avatar_names, framing
from lipsync_server.avatars import importer, media, repository
from lipsync_server.crop import FEATHERED

from . import crop_track, dataset, quality_gates, showing, training, video_input
from .face_tracker import FaceTracker
from .progress import Progress

MAX_LOOP_FRAMES = 250  # the served loop: the longest run of usable frames, up to 10 s
MIN_USABLE_SHARE = 0.5  # of the frames showing one usable face: less, the video is mostly something else
IMPORTED = "imported.json"  # the version the work folder's trained UNet became


class CreationError(ValueError):
    """Why no version was added; the message says what to do."""


@dataclass
class Request:
    name: str
    video: Path
    repository: Path
    work: Path
    plan: training.Plan = field(default_factory=training.Plan)
    min_seconds: float = video_input.MIN_SECONDS
    ignore_gates: bool = False
    paste: str = FEATHERED


@dataclass
class Result:
    version: int
    report: quality_gates.Report
    left_out: dict[str, int]
    seconds: dict[str, float]  # per stage (tracking: the whole dataset stage; face tracker: its networks)


def create(request: Request) -> Result:
    avatar_names.check_name(request.name)
    if not repository.has_encoder(request.repository):
        raise CreationError(f"{request.repository} has no audio_encoder: give the model repository the server serves")
    seconds: dict[str, float] = {}
    try:
        video = video_input.read(request.video, request.min_seconds)
    except video_input.VideoInputError as error:
        raise CreationError(str(error)) from None
    info = _dataset(request, video, seconds)
    showing.contact_sheet(request.work, info)
    # The frames that many seconds of sound make (the reference's count, a little under 25 a second).
    needed = framing.frame_count(round(request.min_seconds * framing.SAMPLE_RATE))
    share = len(info.usable) / max(info.frame_count, 1)
    if share < MIN_USABLE_SHARE:
        raise CreationError(
            f"{request.video}: only {share:.0%} of its frames show one usable face "
            f"(left out: {_counts(info.left_out())}); an avatar needs at least {MIN_USABLE_SHARE:.0%}"
        )
    if len(info.usable) < needed:
        raise CreationError(
            f"{request.video}: {len(info.usable) / framing.FPS:.1f} s show one usable face "
            f"(left out: {_counts(info.left_out())}); an avatar needs at least {request.min_seconds:g} s"
        )
    features = training.encoder_features(request.work, request.repository)
    # The sync network scores the result, and drives the sync loss when the plan weighs one.
    syncing = Progress("sync network", request.plan.sync_steps, "steps")
    sync = training.train_sync(
        request.work, request.plan, features, lambda step, _, loss: syncing.update(step, f"loss {loss:.4f}")
    )
    seconds["sync network"] = syncing.finish(f"{request.plan.sync_steps} steps")
    steps = Progress("training", request.plan.steps, "steps")
    unet = training.train(
        request.work, request.plan, features, lambda step, _, loss: steps.update(step, f"loss {loss:.4f}"), sync=sync
    )
    assert unet is not None
    seconds["training"] = steps.finish(f"{request.plan.steps} steps at width {request.plan.width}")
    checks = Progress("quality gates", 1, "checks")
    report = quality_gates.check(request.work, unet, features, sync)
    (request.work / "report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    showing.held_out_video(request.work, info, unet, features)
    showing.report_markdown(request.work, report, info)
    seconds["gates"] = checks.finish(
        f"PSNR {report.psnr_db:.1f} dB, lip sync r {report.sync_r:.2f} (the video's own {report.real_sync_r:.2f})"
    )
    if report.failed and not request.ignore_gates:
        raise CreationError(
            "no version added: " + "; ".join(report.failed) + f" (report: {request.work / 'report.json'}; "
            "--ignore-gates adds it anyway)"
        )
    if not (media.media_dir(request.repository, request.name) / "rects.json").is_file():
        loop = _loop_frames(info)
        repository.write_media(
            request.repository,
            request.name,
            [request.work / "frames" / f"{n}.jpg" for n in loop],
            [info.rects[n] for n in loop],
            request.paste,
        )
    version = _imported_before(request)
    if version is None:
        version = importer.import_unet(request.repository, request.name, request.work / "train" / "unet.pth")
        repository.record_creation(request.repository, request.name, version, report.as_dict())
        (request.work / IMPORTED).write_text(json.dumps(_imported_marker(request, version)))
    return Result(version, report, info.left_out(), seconds)


def _imported_marker(request: Request, version: int) -> dict:
    unet = hashlib.sha256((request.work / "train" / "unet.pth").read_bytes()).hexdigest()
    return {"repository": str(request.repository.resolve()), "name": request.name, "version": version, "unet": unet}


def _imported_before(request: Request) -> int | None:
    """The version this work folder's trained UNet already became, so that a run started again
    after the import (a retried Kubernetes Job whose --load failed) adds no second copy."""
    marker = request.work / IMPORTED
    if not marker.is_file():
        return None
    version = json.loads(marker.read_text())["version"]
    folder = repository.version_folder(request.repository, request.name, version)
    if json.loads(marker.read_text()) != _imported_marker(request, version) or not folder.is_dir():
        return None
    return version


def _dataset(request: Request, video: video_input.VideoInput, seconds: dict[str, float]) -> dataset.DatasetInfo:
    """The work folder's dataset, made now unless it was made from this same video before."""
    source = {"video": str(request.video.resolve()), "bytes": request.video.stat().st_size}
    marker = request.work / "source.json"
    if marker.is_file() and json.loads(marker.read_text()) == source and (request.work / "dataset.json").is_file():
        return dataset.read(request.work)
    if marker.is_file() and json.loads(marker.read_text()) != source:
        raise CreationError(f"{request.work} holds another video's avatar: choose another --work folder")
    request.work.mkdir(parents=True, exist_ok=True)
    writer = dataset.DatasetWriter(request.work, video.frame_count, video.audio)
    tracker = FaceTracker()
    tracking = Progress("face tracking", video.frame_count, "frames")
    tracker_s = 0.0
    for n, frame in enumerate(video.frames()):
        began = time.monotonic()
        tracked = tracker.track(frame)
        tracker_s += time.monotonic() - began
        writer.add(frame, crop_track.frame_crop(tracked), tracked.points)
        tracking.update(n + 1)
    seconds["face tracker"] = tracker_s  # the networks alone, without decoding and writing
    info = writer.finish()
    seconds["tracking"] = tracking.finish(
        f"{len(info.usable)} of {info.frame_count} frames usable (left out: {_counts(info.left_out())})"
    )
    marker.write_text(json.dumps(source))
    return info


def _loop_frames(info: dataset.DatasetInfo) -> list[int]:
    """The longest run of consecutive usable training frames, at most MAX_LOOP_FRAMES."""
    best: list[int] = []
    run: list[int] = []
    for n in info.training_frames():
        run = run + [n] if run and run[-1] == n - 1 else [n]
        if len(run) > len(best):
            best = run
    return best[:MAX_LOOP_FRAMES]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {why}" for why, count in counts.items()) or "none"
