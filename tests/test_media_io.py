"""Audio in from WAV, FLAC, MP3 and a video's audio track; frames out as MP4 or JPEGs."""

import av
import numpy as np
import pytest
import soundfile

from lipsync import media_io
from lipsync_server.calibration import voice


@pytest.fixture(scope="module")
def tone():
    return voice.speech(1.0, 22050, seed=3)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_lossless_files_read_back_exactly_enough(tmp_path, tone, suffix):
    path = tmp_path / f"speech{suffix}"
    soundfile.write(path, tone, 22050, subtype="PCM_16")
    audio, rate = media_io.read_audio(path)
    assert rate == 22050 and audio.dtype == np.float32 and len(audio) == len(tone)
    assert np.abs(audio - tone).max() < 1e-4


def test_mp3_and_video_audio_tracks(tmp_path, tone):
    mp3 = tmp_path / "speech.mp3"
    with av.open(str(mp3), "w") as container:
        stream = container.add_stream("libmp3lame", rate=22050)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(tone[None], format="flt", layout="mono")
        frame.sample_rate = 22050
        for packet in stream.encode(frame):
            container.mux(packet)
        container.mux(stream.encode(None))
    audio, rate = media_io.read_audio(mp3)
    assert rate == 22050 and abs(len(audio) - len(tone)) < 2 * 1152 + 1105  # encoder delay and padding

    frame_jpeg = open_jpeg()
    video = tmp_path / "clip.mp4"
    assert media_io.write_mp4(video, [frame_jpeg] * 25, tone, 22050) == 25
    audio, rate = media_io.read_audio(video)
    assert rate == 22050 and abs(len(audio) / rate - 1.0) < 0.1


def test_write_jpegs(tmp_path):
    assert media_io.write_jpegs(tmp_path / "frames", [open_jpeg()] * 3) == 3
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["000000.jpg", "000001.jpg", "000002.jpg"]


def open_jpeg() -> bytes:
    from lipsync_server.avatars.compositing import encode_jpeg

    return encode_jpeg(np.full((64, 96, 3), 128, np.uint8), 80)
