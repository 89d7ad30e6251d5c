"""Avatar creation from a plain video: the face tracking networks (fetched once, checked), the
video's pictures at 25 frames/s on its sound's clock, refusals, and the crop of every frame of
a made-up talking head (SyncTalk_2D's geometry, smoothed; frames with another face or none
left out)."""

import io
import re
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from lipsync_protocol import framing
from lipsync_server.creation import create, crop_track, face_models, training, video_input
from lipsync_server.creation.face_tracker import FaceTracker
from lipsync_server.creation.progress import Progress
from lipsync_server.demo import talking_head

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tracker(person_video) -> FaceTracker:  # the video's fixture fetched the networks
    return FaceTracker()


def crops_of(path: Path, tracker: FaceTracker) -> tuple[list[crop_track.FrameCrop], video_input.VideoInput]:
    video = video_input.read(path, min_seconds=1.0)
    return [crop_track.frame_crop(tracker.track(frame)) for frame in video.frames()], video


def test_the_networks_are_checked_by_hash(tmp_path, monkeypatch, tracker):
    monkeypatch.setenv("LIPSYNC_CACHE_DIR", str(tmp_path))
    with pytest.raises(face_models.FaceModelsMissing, match="lipsync-server face-models"):
        face_models.paths()
    detector, _ = face_models.fetch()
    data = detector.read_bytes()
    detector.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit damaged
    with pytest.raises(face_models.FaceModelsMissing):
        face_models.paths()
    assert face_models.fetch()[0].read_bytes() != b""  # fetched again, intact
    face_models.paths()


def write_numbered_video(
    path: Path, times: list[float], sound_s: float | None, numbers: list[int] | None = None
) -> None:
    """Pictures whose grey level is 20 + 5 x their number (`numbers`, else their order), shown
    at `times` (s), lossless; and a tone of `sound_s` seconds."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=30, options={"qp": "0", "preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv444p"
        video.time_base = video.codec_context.time_base = Fraction(1, 90_000)
        audio = container.add_stream("aac", rate=44_100, layout="mono") if sound_s else None
        for number, seconds in zip(numbers or range(len(times)), times):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 + 5 * number, np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(seconds * 90_000), Fraction(1, 90_000)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio is not None:
            tone = (0.3 * np.sin(np.arange(round(sound_s * 44_100)) / 9)).astype(np.float32)
            for begin in range(0, len(tone), 1024):
                chunk = av.AudioFrame.from_ndarray(tone[None, begin : begin + 1024], format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = 44_100, begin
                container.mux(audio.encode(chunk))
            container.mux(audio.encode())


def test_pictures_at_25_frames_per_second_on_the_sound_clock(tmp_path):
    # A phone's variable rate: intervals of 1/30 s, some 1/20 s, some 1/60 s.
    gaps = [1 / 30, 1 / 30, 1 / 20, 1 / 60, 1 / 30, 1 / 20] * 8
    times = list(np.concatenate([[0.0], np.cumsum(gaps)]))
    path = tmp_path / "numbered.mp4"
    write_numbered_video(path, times, sound_s=1.6)
    video = video_input.read(path, min_seconds=1.0)
    assert len(video.audio) % framing.SAMPLES_PER_FRAME == 0
    assert video.frame_count == framing.frame_count(len(video.audio)) > 30
    shown = [round((frame[0, 0, 0] - 20) / 5) for frame in video.frames()]
    # Frame k is the picture on screen at k / 25 s: the last one shown at or before it.
    expected = [max(i for i, t in enumerate(times) if t <= k / framing.FPS + 1e-3) for k in range(video.frame_count)]
    assert shown == expected


def test_videos_that_cannot_become_an_avatar_are_refused(tmp_path):
    silent = tmp_path / "silent.mp4"
    write_numbered_video(silent, [i / 30 for i in range(30)], sound_s=None)
    with pytest.raises(video_input.VideoInputError, match="no sound track"):
        video_input.read(silent)
    short = tmp_path / "short.mp4"
    write_numbered_video(short, [i / 30 for i in range(30)], sound_s=1.0)
    with pytest.raises(video_input.VideoInputError, match=r"1\.0 s of sound; an avatar needs at least 30 s"):
        video_input.read(short)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(video_input.VideoInputError, match="not a video FFmpeg can read"):
        video_input.read(text)


def test_pictures_that_cannot_teach_a_mouth_are_refused_before_any_tracking(tmp_path):
    """Each refusal names its figure, from one pass over the file."""
    at_30 = [i / 30 for i in range(180)]  # 6 s
    broken = tmp_path / "broken.mp4"  # a container that claims 1.7 hours of pictures
    write_numbered_video(broken, [0.0, 3.34, 6000.0], sound_s=6.0)
    with pytest.raises(video_input.VideoInputError, match=r"last picture is at 6000\.0 s against 6\.0 s of sound"):
        video_input.read(broken, min_seconds=1.0)
    stretched = tmp_path / "stretched.mp4"  # two pictures' timestamps stretched over the sound
    write_numbered_video(stretched, [0.0, 3.0, 5.97], sound_s=6.0, numbers=[0, 4, 8])
    with pytest.raises(video_input.VideoInputError, match=r"the video has 3 distinct pictures in 6\.0 s of sound"):
        video_input.read(stretched, min_seconds=1.0)
    frozen = tmp_path / "frozen.mp4"  # every picture stamped, one of them shown for 3 s
    numbers = [min(n, 30) if n < 120 else n for n in range(180)]
    write_numbered_video(frozen, at_30, sound_s=6.0, numbers=[2 * n for n in numbers])
    with pytest.raises(video_input.VideoInputError, match=r"stands still over 3\.0 s of speech from 1\.0 s"):
        video_input.read(frozen, min_seconds=1.0)
    moving = tmp_path / "moving.mp4"  # the same, moving all along: taken
    write_numbered_video(moving, at_30, sound_s=6.0, numbers=[2 * n for n in range(180)])
    assert video_input.read(moving, min_seconds=1.0).frame_count == framing.frame_count(6 * framing.SAMPLE_RATE)


def test_frames_with_another_face_or_none_are_left_out(person_video, tracker):
    crops, _ = crops_of(person_video, tracker)
    status = {k: crop.status for k, crop in enumerate(crops)}

    def during(begin: float, end: float) -> set[str]:
        return {status[k] for k in range(round(begin * framing.FPS), round(end * framing.FPS))}

    assert during(0.0, 2.0) == during(3.1, 4.0) == during(5.1, 5.8) == {crop_track.OK}
    assert during(2.6, 3.0) == {crop_track.MORE_FACES}  # the second face wholly in view
    assert during(4.0, 5.0) <= {crop_track.NO_FACE, crop_track.TURNED_AWAY}


def test_the_crop_is_synctalks_square_and_still_on_a_still_head(tmp_path, tracker):
    clip = talking_head.Clip(seconds=4.0, sway=False)
    crops, _ = crops_of(talking_head.write(tmp_path / "still.mp4", clip), tracker)
    assert {crop.status for crop in crops} == {crop_track.OK}
    rects = np.array(crop_track.smooth(crops), dtype=float)
    assert np.all(rects[:, 2] - rects[:, 0] == rects[:, 3] - rects[:, 1])  # square
    # From the face's sides, from the nose down: the lips and the chin inside, the eyes above.
    scale, top = talking_head.SCALE, talking_head.WINDOW_TOP
    lips_y, chin_y = talking_head.LIPS[1] * scale - top, talking_head.CHIN_Y * scale - top
    sides = np.array(talking_head.FACE_SIDES_X) * scale
    assert np.allclose(rects[:, 2] - rects[:, 0], sides[1] - sides[0], rtol=0.1)
    assert np.all(rects[:, 1] < lips_y) and np.all(rects[:, 3] > chin_y)
    # While the mouth moves the face mesh's points move a little, and by how much differs between
    # runs and CPUs (the runtime's kernels and threads: a centre's std of 0.87 and 1.03 px in two
    # runs on one AVX-512 BF16 machine, its spread up to 3.5 px of a 232 px square). What a user
    # would see is jitter or drift. A centre is a rounded corner plus half a rounded side: within
    # half a pixel of the smoothed one, so between frames it moves by the smoothed motion (under
    # half a pixel) plus at most one pixel of rounding. And it stays within 2 % of its side.
    centres = (rects[:, :2] + rects[:, 2:]) / 2
    side = rects[0, 2] - rects[0, 0]
    assert np.abs(np.diff(centres, axis=0)).max() <= 1.5, np.abs(np.diff(centres, axis=0)).max(axis=0)
    assert np.ptp(centres, axis=0).max() <= 0.02 * side, (np.ptp(centres, axis=0), side)


def test_a_video_mostly_without_a_usable_face_is_refused_before_training(tmp_path, tracker):
    """Turned away for most of it: the stretch is left out and counted, and with so little left
    the video is refused after tracking, before any training step."""
    video = talking_head.write(tmp_path / "away.mp4", talking_head.Clip(seconds=4.0, turned_away=(1.0, 4.0)))
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "model_repository" / "audio_encoder", repo / "audio_encoder")
    request = create.Request("away", video, repo, tmp_path / "work", min_seconds=0.5)
    with pytest.raises(create.CreationError, match=r"only \d+% of its frames show one usable face") as refusal:
        create.create(request)
    assert "an avatar needs at least 50%" in str(refusal.value)
    assert not (tmp_path / "work" / "train").exists()  # nothing was trained


def test_a_stage_says_up_front_how_long_it_takes_from_a_measured_step():
    out = io.StringIO()
    progress = Progress("training", 1000, "steps", out)
    for step in (501, 502, 503):  # resumed halfway: the estimate is for what is left
        progress.update(step)
    (estimate,) = [line for line in out.getvalue().splitlines() if "take about" in line]
    assert re.fullmatch(r"training: 499 steps take about \d+ (s|min) at [\d.]+ s each", estimate)


def test_a_gpu_trains_the_reference_width_and_a_cpu_a_narrow_one():
    assert training.default_width("cuda") == training.default_width("cuda:1") == 32
    assert training.default_width("cpu") == 8
