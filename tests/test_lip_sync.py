"""The trained demo avatar keeps its lips in sync with speech it never heard, through the server.

Held-out speech (seeds the training never used, with a long pause) is rendered by the running
server; in every frame the mouth opening is measured as the dark area inside the mouth box and
compared with the speech level of that frame's audio window (lipsync.mouth_track).
"""

import io

import numpy as np
import pytest
from PIL import Image

from lipsync.client import LipsyncClient
from lipsync_protocol import framing
from lipsync_server.audio import mel_pipeline
from lipsync_server.avatars.media import AvatarMedia, media_dir
from lipsync_server.calibration import mouth_track, voice
from lipsync_server.demo import synthetic, training

pytestmark = pytest.mark.integration

PAUSE = training.HELD_OUT_PAUSE  # seconds of the clip that are silent (noise floor only)
MIN_R = 0.7
SHIFT_FRAMES = 3


def mouth_openings(client: LipsyncClient, audio: np.ndarray, media: AvatarMedia) -> np.ndarray:
    """Dark area inside the mouth box of every rendered frame."""
    frames = client.render(audio, framing.SAMPLE_RATE, "demo", version=synthetic.TRAINED_VERSION)
    areas = []
    for position, jpeg in enumerate(frames):
        rect = media.rects[framing.pingpong(position, len(media))]
        areas.append(
            synthetic.dark_area(np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")), synthetic.mouth_box(rect))
        )
    return np.array(areas, np.float64)


@pytest.fixture(scope="module")
def media(server) -> AvatarMedia:
    return AvatarMedia(media_dir(server.repository, "demo"))


@pytest.fixture(scope="module")
def speech_and_mouths(grpc_url, media):
    audio = training.held_out_speech()
    level, _ = mouth_track.frame_levels(mel_pipeline.mel_of(audio))
    return audio, level, mouth_openings(LipsyncClient(grpc_url), audio, media)


def test_mouth_opening_follows_the_speech(speech_and_mouths):
    _, level, areas = speech_and_mouths
    assert len(areas) == len(level)  # one measured frame per audio window
    r = np.corrcoef(areas, level)[0, 1]
    print(f"Pearson r (mouth dark area vs speech level, {len(areas)} frames) = {r:.3f}")
    assert r >= MIN_R
    open_frames = areas[level > np.percentile(level, 90)]
    assert open_frames.mean() > 300  # pixels: loud frames show a clearly open mouth


def test_mouth_is_closed_in_silence(speech_and_mouths):
    _, level, areas = speech_and_mouths
    # Frame j shows the window around j/25 + 0.05 s, 0.2 s long: keep a margin on both sides.
    silent = np.arange(round((PAUSE[0] + 0.2) * framing.FPS), round((PAUSE[1] - 0.25) * framing.FPS))
    assert level[silent].max() < mouth_track.CLOSED_LEVEL  # the audio there is silent indeed
    print(
        f"dark area in {len(silent)} silent frames: max {areas[silent].max():.0f}, loud frames mean "
        f"{areas[level > np.percentile(level, 90)].mean():.0f}"
    )
    assert areas[silent].max() <= 40


def test_audio_shifted_by_three_frames_breaks_the_sync(grpc_url, media, speech_and_mouths):
    """The test is sensitive: speech that arrives 3 frames late no longer matches the frames."""
    audio, level, areas = speech_and_mouths
    delay = (
        np.random.default_rng(1)
        .normal(0, voice.NOISE_FLOOR, SHIFT_FRAMES * framing.SAMPLES_PER_FRAME)
        .astype(np.float32)
    )
    shifted = mouth_openings(LipsyncClient(grpc_url), np.concatenate([delay, audio]), media)[: len(level)]
    aligned, misaligned = np.corrcoef(areas, level)[0, 1], np.corrcoef(shifted, level)[0, 1]
    print(f"Pearson r aligned {aligned:.3f}, audio {SHIFT_FRAMES} frames late {misaligned:.3f}")
    assert misaligned < aligned - 0.3
