"""A made-up talking-head video for avatar creation's tests and benchmark (no footage can be
downloaded): scikit-image's astronaut photograph, enlarged, its jaw and lips opened by a smooth
warp that follows speech (demo.synthetic), the head swaying a little, at 30 frames/s and
1280x720 with the speech as its sound track; and the awkward cases a phone video brings: a
variable frame rate, a second face entering, a stretch with the face turned away, no sound; and
what makes a video unusable: a picture standing still, broken timestamps.
"""

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from scipy import signal

from lipsync_protocol import framing
from lipsync_server.audio import mel_pipeline
from lipsync_server.calibration import mouth_track, voice

WIDTH, HEIGHT = 1280, 720
SCALE = 2.5  # the 512x512 photograph becomes 1280x1280; the frame shows a window of it
WINDOW_TOP = 150  # the window's top row in the enlarged photograph: the face at about a third
AUDIO_RATE = 48_000
TIME_BASE = Fraction(1, 90_000)
# Where the photograph's face is (512x512 pixels; read once from the face mesh): the lips' gap,
# the chin, the face's sides at the cheekbones, and the mouth's corners.
LIPS = (223.6, 146.0)
CHIN_Y = 174.2
FACE_SIDES_X = (179.0, 271.0)
MOUTH_HALF_WIDTH = 19.0
FACE_BOX = (172, 66, 278, 186)  # x1, y1, x2, y2: what a turn of the head hides
MAX_OPENING = 9.0  # photograph pixels between the lips, fully open


@dataclass
class Clip:
    seconds: float = 12.0
    fps: float = 30.0
    seed: int = 0
    variable_frame_rate: bool = False
    second_face: tuple[float, float] | None = None  # from, to (s): another face in the frame
    turned_away: tuple[float, float] | None = None  # from, to (s): the face turned aside
    sound: bool = True
    sway: bool = True  # the head moves a little (False: a still head, the mouth alone moves)
    still: tuple[float, float] | None = None  # from, to (s): the picture stands still (a frozen app)
    frame_times: tuple[float, ...] | None = None  # when its pictures are stamped (broken timestamps)


def write(path: Path, clip: Clip) -> Path:
    """Writes the clip as H.264 (and AAC) in an MP4 file."""
    speech = voice.speech(clip.seconds, framing.SAMPLE_RATE, clip.seed)
    opening = _opening(speech)
    photo = cv2.resize(_astronaut(), None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(clip.seed)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=round(clip.fps), options={"preset": "veryfast", "crf": "20"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.time_base = video.codec_context.time_base = TIME_BASE
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="stereo") if clip.sound else None
        for seconds in _frame_times(clip, rng):
            shown = clip.still[0] if clip.still and clip.still[0] <= seconds < clip.still[1] else seconds
            frame = _frame(photo, shown, opening, clip)
            packet_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            packet_frame.pts, packet_frame.time_base = round(seconds / TIME_BASE), TIME_BASE
            container.mux(video.encode(packet_frame))
        container.mux(video.encode())
        if audio is not None:
            _write_audio(container, audio, speech)
    return path


def _frame_times(clip: Clip, rng: np.random.Generator) -> list[float]:
    """When each frame is shown: every 1/fps, or (a phone's variable rate) with intervals
    drawn around it, some frames twice as long; or the clip's own stamps."""
    if clip.frame_times is not None:
        return list(clip.frame_times)
    if not clip.variable_frame_rate:
        return [i / clip.fps for i in range(int(clip.seconds * clip.fps))]
    times, now = [], 0.0
    while now < clip.seconds:
        times.append(now)
        now += rng.choice([1.0, 1.0, 0.8, 1.25, 2.0]) / clip.fps
    return times


def _opening(speech: np.ndarray):
    """The mouth's opening (0..1) at any time: what mouth_track reads from the speech, at 25
    frames/s, interpolated."""
    shapes, _ = mouth_track.mouth_shapes(mel_pipeline.mel_of(speech))
    times = np.arange(len(shapes)) / framing.FPS
    return lambda seconds: float(np.interp(seconds, times, shapes))


def _frame(photo: np.ndarray, seconds: float, opening, clip: Clip) -> np.ndarray:
    face = _open_mouth(photo, opening(seconds))
    if clip.turned_away and clip.turned_away[0] <= seconds < clip.turned_away[1]:
        face = _turn_away(face)
    # The head sways: a few pixels and a degree or so, slowly.
    sway = 1.0 if clip.sway else 0.0
    angle = sway * 1.2 * math.sin(2 * math.pi * seconds / 5.3)
    shift_x = sway * 6 * math.sin(2 * math.pi * seconds / 4.1)
    shift_y = sway * 3 * math.sin(2 * math.pi * seconds / 3.7) - WINDOW_TOP
    centre = (LIPS[0] * SCALE, LIPS[1] * SCALE)
    motion = np.asarray(cv2.getRotationMatrix2D(centre, angle, 1.0), np.float64)
    motion[:, 2] += (shift_x, shift_y)
    frame = cv2.warpAffine(face, motion, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if clip.second_face and clip.second_face[0] <= seconds < clip.second_face[1]:
        progress = (seconds - clip.second_face[0]) / (clip.second_face[1] - clip.second_face[0])
        _add_second_face(frame, photo, progress)
    return frame


def _open_mouth(photo: np.ndarray, opening: float) -> np.ndarray:
    """The jaw lowered by `opening` of MAX_OPENING: everything below the lips' gap, within the
    jaw, moves down (fading out at the jaw's sides and down the neck), and the gap shows the
    mouth's dark inside."""
    gap = opening * MAX_OPENING * SCALE
    if gap < 0.5:
        return photo
    x_mouth, y_mouth = LIPS[0] * SCALE, LIPS[1] * SCALE
    chin = CHIN_Y * SCALE
    half_jaw = (FACE_SIDES_X[1] - FACE_SIDES_X[0]) / 2 * SCALE
    neck = 0.8 * (chin - y_mouth)
    # Only the region around the lower face changes.
    x1, x2 = int(x_mouth - half_jaw), int(x_mouth + half_jaw)
    y1, y2 = int(y_mouth - 10 * SCALE), int(chin + neck + gap)
    ys, xs = np.mgrid[y1:y2, x1:x2].astype(np.float32)
    across = np.clip(1.0 - (np.abs(xs - x_mouth) / half_jaw) ** 2, 0.0, 1.0)
    down = np.clip((ys - y_mouth) / 4.0, 0.0, 1.0) * np.clip(1.0 - (ys - chin) / neck, 0.0, 1.0)
    shift = gap * across * down
    out = photo.copy()
    out[y1:y2, x1:x2] = cv2.remap(photo, xs, ys - shift, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # The inside of the mouth: an ellipse filling the gap between the lips.
    inside = np.zeros(out.shape[:2], np.uint8)
    half_width = int(MOUTH_HALF_WIDTH * SCALE * (0.8 + 0.2 * opening))
    axes = (half_width, max(1, int(gap / 2)))
    cv2.ellipse(inside, (int(x_mouth), int(y_mouth + gap / 2)), axes, 0.0, 0.0, 360.0, (255,), -1)
    alpha = cv2.GaussianBlur(inside, (0, 0), 1.5).astype(np.float32)[..., None] / 255.0
    out[:] = (out * (1 - alpha) + np.array([60, 18, 22], np.float32) * alpha).astype(np.uint8)
    return out


def _turn_away(photo: np.ndarray) -> np.ndarray:
    """The head turned aside: the face squeezed to its side, hair's colour where it was."""
    x1, y1, x2, y2 = (int(v * SCALE) for v in FACE_BOX)
    out = photo.copy()
    hair = photo[int(40 * SCALE) : int(60 * SCALE), int(200 * SCALE) : int(240 * SCALE)].reshape(-1, 3)
    out[y1:y2, x1:x2] = np.median(hair, axis=0).astype(np.uint8)
    width = (x2 - x1) // 4
    out[y1:y2, x1 : x1 + width] = cv2.resize(photo[y1:y2, x1:x2], (width, y2 - y1), interpolation=cv2.INTER_AREA)
    return out


def _add_second_face(frame: np.ndarray, photo: np.ndarray, progress: float) -> None:
    """Another person (the face, mirrored, at 0.8 size) walking in from the right to the side."""
    x1, y1, x2, y2 = (int(v * SCALE) for v in (150, 40, 300, 200))
    other = cv2.resize(photo[y1:y2, x1:x2][:, ::-1], None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    height, width = other.shape[:2]
    left = int(WIDTH - progress * (width + 40))
    top = 100
    visible = slice(max(0, left), min(WIDTH, left + width))
    frame[top : top + height, visible] = other[:, visible.start - left : visible.stop - left]


def _write_audio(container, stream, speech: np.ndarray) -> None:
    """The speech at 48 kHz on both channels (the creation step mixes and resamples it back)."""
    samples = signal.resample_poly(speech, AUDIO_RATE // framing.SAMPLE_RATE, 1).astype(np.float32)
    step = 1024
    for begin in range(0, len(samples), step):
        chunk = samples[begin : begin + step]
        frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = AUDIO_RATE, begin
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()
