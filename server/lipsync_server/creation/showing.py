"""What avatar creation shows of its work, written into the work folder by every run (people
would rather look than read):

- contact-sheet.png, after the dataset stage: frames from the whole video, each usable one as
  the crop the network trains on, each left-out one whole, framed in red with why;
- held-out.mp4, after the gates: the held-out speech with the generated mouth (left) beside the
  real frames (right), so that both mouths can be watched;
- report.md, beside report.json: the gates' figures, generated against real.
"""

from pathlib import Path

import av
import cv2
import numpy as np
import soundfile

from lipsync_protocol import framing
from lipsync_server.avatars import compositing
from lipsync_server.networks.exported import face_mask
from lipsync_server.networks.unet import LipSyncUNet

from . import crop_track, dataset, quality_gates

SHEET_COLUMNS, SHEET_ROWS, TILE = 8, 6, 160
RED, GREEN, BLUE, WHITE = (40, 40, 220), (60, 180, 60), (220, 120, 40), (255, 255, 255)  # BGR
SIDE_HEIGHT = 360  # each half of held-out.mp4


def contact_sheet(work: Path, info: dataset.DatasetInfo) -> Path:
    """Frames evenly over the video: usable ones as their crop (blue label: held out), left-out
    ones whole, in a red frame with why."""
    count = min(info.frame_count, SHEET_COLUMNS * SHEET_ROWS)
    picked = np.linspace(0, info.frame_count - 1, count).round().astype(int)
    sheet = np.full((SHEET_ROWS * TILE, SHEET_COLUMNS * TILE, 3), 32, np.uint8)
    for k, n in enumerate(picked):
        usable = info.status[n] == crop_track.OK
        image = cv2.imread(str(work / ("faces" if usable else "frames") / f"{n}.{'png' if usable else 'jpg'}"))
        tile = _fit(image, TILE)
        if usable:
            label, colour = f"{n / framing.FPS:.1f} s", BLUE if n >= info.held_out_from else GREEN
        else:
            label, colour = f"{n / framing.FPS:.1f} s: {info.status[n]}", RED
            cv2.rectangle(tile, (0, 0), (TILE - 1, TILE - 1), RED, 4)
        cv2.rectangle(tile, (0, TILE - 18), (TILE, TILE), colour, -1)
        cv2.putText(tile, label[:26], (4, TILE - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.38, WHITE, 1, cv2.LINE_AA)
        row, column = divmod(k, SHEET_COLUMNS)
        sheet[row * TILE : (row + 1) * TILE, column * TILE : (column + 1) * TILE] = tile
    path = work / "contact-sheet.png"
    cv2.imwrite(str(path), sheet)
    return path


def held_out_video(work: Path, info: dataset.DatasetInfo, unet: LipSyncUNet, features: np.ndarray) -> Path:
    """The held-out part with its sound: the generated mouth pasted in (left), the real frame
    (right); a left-out frame shows the real one on both sides."""
    frames = range(info.held_out_from, info.frame_count)
    reference = info.training_frames()[0]
    mask = face_mask()
    audio, rate = soundfile.read(work / "aud.wav", dtype="float32")
    begin = info.held_out_from * rate // framing.FPS
    width = round(info.width * SIDE_HEIGHT / info.height) // 2 * 2  # each half; even for yuv420p
    path = work / "held-out.mp4"
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=framing.FPS, options={"crf": "23", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = 2 * width, SIDE_HEIGHT, "yuv420p"
        sound = container.add_stream("aac", rate=rate, layout="mono")
        for n in frames:
            real = cv2.imread(str(work / "frames" / f"{n}.jpg"))
            made = real
            if info.status[n] == crop_track.OK:
                face = quality_gates.generated_face(work, unet, features, n, reference, mask)
                pixels = (face.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
                made = compositing.paste_face(real, info.rects[n], pixels)
            picture = np.concatenate([cv2.resize(x, (width, SIDE_HEIGHT)) for x in (made, real)], axis=1)[..., ::-1]
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")))
        container.mux(video.encode())
        held = np.ascontiguousarray(audio[begin : begin + len(frames) * rate // framing.FPS])
        for start in range(0, len(held), 1024):
            chunk = av.AudioFrame.from_ndarray(held[None, start : start + 1024], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = rate, start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode())
    return path


def report_markdown(work: Path, report: quality_gates.Report, info: dataset.DatasetInfo) -> Path:
    """report.md: the gates' figures, the person's own beside the generated ones."""
    left_out = ", ".join(f"{count} {why}" for why, count in info.left_out().items()) or "none"
    scores = (
        f"| the sync network's score (real with audio 0.4 s off) | {report.sync_score:.3f} | "
        f"{report.real_sync_score:.3f} ({report.real_off_sync_score:.3f}) |"
        if report.sync_score is not None
        and report.real_sync_score is not None
        and report.real_off_sync_score is not None
        else "| the sync network's score | not measured | |"
    )
    lines = [
        "# Avatar creation: the held-out checks",
        "",
        f"{info.frame_count} frames, {len(info.usable)} usable (left out: {left_out}); the last "
        f"{info.frame_count - info.held_out_from} held out, {report.frames} of them checked.",
        "",
        "| | generated | the video's own |",
        "| --- | --- | --- |",
        f"| PSNR against the real face (dB, bar {quality_gates.MIN_PSNR_DB:g}) | {report.psnr_db:.1f} | |",
        f"| mouth opening against the speech level (r, bar {quality_gates.MIN_SYNC_SHARE:g} x the video's) "
        f"| {report.sync_r:.2f} | {report.real_sync_r:.2f} |",
        f"| mouth opening in pauses | {report.pause_opening:.3f} | {report.real_pause_opening:.3f} |",
        scores,
        "",
        "Gates: " + ("; ".join(report.failed) if report.failed else "all passed") + ".",
        "",
        "![frames of the video: crops trained on, frames left out in red](contact-sheet.png)",
        "",
        "[The held-out speech: generated (left) beside the real frames (right)](held-out.mp4)",
    ]
    path = work / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _fit(image: np.ndarray, side: int) -> np.ndarray:
    """`image` scaled into a side x side tile, centred on grey."""
    scale = side / max(image.shape[:2])
    small = cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))))
    tile = np.full((side, side, 3), 32, np.uint8)
    top, left = (side - small.shape[0]) // 2, (side - small.shape[1]) // 2
    tile[top : top + small.shape[0], left : left + small.shape[1]] = small
    return tile
