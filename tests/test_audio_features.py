"""The DALI mel pipeline and the audio-encoder graph against the librosa reference."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from lipsync_protocol import framing
from lipsync_server.audio import anti_aliasing, mel_pipeline
from lipsync_server.audio.encoder_inputs import encoder_inputs
from lipsync_server.networks.audio_encoder import AudioEncoder
from lipsync_server.networks.export import export_audio_encoder

import reference


@pytest.fixture(scope="module")
def pipeline():
    pipe = mel_pipeline.build(batch_size=4, num_threads=1)
    pipe.build()
    return pipe


def run_mel(pipe, audio: np.ndarray, rate: int = 16000) -> np.ndarray:
    return mel_pipeline.run(pipe, [audio], [rate])[0]


@pytest.mark.parametrize("samples", [framing.MIN_SAMPLES, 16000, 16123, 61440, 128000])
def test_mel_matches_librosa_reference(pipeline, speech, samples):
    audio = np.resize(speech[0], samples)
    ours, ref = run_mel(pipeline, audio), reference.mel(audio)
    assert ours.shape == ref.shape == (framing.mel_frame_count(samples), 80)
    assert np.abs(ours - ref).max() < 1e-3


def test_mel_of_silence_is_the_floor(pipeline):
    assert np.allclose(run_mel(pipeline, np.zeros(8000, np.float32)), -4.0)


def test_a_streams_segments_have_the_whole_streams_windows_for_10_minutes():
    # Segments start at multiples of 16 mel frames (5 video frames), where windows realign: the
    # segment's windows are the whole stream's from there on, rounding of the whole length included.
    # Every 31st length up to 10 minutes, the longest, and 384 and 3280 (where the reference's
    # float arithmetic rounds down; see below).
    lengths = {*range(16, framing.MAX_MEL_FRAMES + 1, 31), framing.MAX_MEL_FRAMES, 384, 3280}
    for mel_frames in sorted(lengths):
        whole = framing.window_starts(mel_frames)
        assert len(whole) == int((mel_frames - 16) / 80.0 * 25.0) + 2  # the reference's float rule
        for offset in (16, 48) if mel_frames > 64 else ():
            segment = framing.window_starts(mel_frames - offset, offset)
            skipped = offset * framing.FPS // framing.MEL_PER_SECOND
            assert [start + offset for start in segment] == whole[skipped:], (mel_frames, offset)


@pytest.fixture(scope="module")
def encoder_graph(tmp_path_factory):
    torch.manual_seed(3)
    encoder = AudioEncoder().eval()
    path = tmp_path_factory.mktemp("encoder") / "model.onnx"
    export_audio_encoder(encoder, path)
    return encoder, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# 384 and 3280 are lengths where the reference's float arithmetic rounds down: one window less than
# integer arithmetic gives.
@pytest.mark.parametrize("mel_frames", [16, 17, 81, 384, 641, 3280])
def test_encoder_graph_matches_reference_windows_and_context(encoder_graph, mel_frames):
    encoder, session = encoder_graph
    mel = np.random.default_rng(mel_frames).uniform(-4, 4, (mel_frames, 80)).astype(np.float32)
    (ours,) = session.run(None, encoder_inputs(mel))
    ref = reference.frame_features(reference.encode(encoder, reference.windows(mel)))
    assert ours.shape == (1, *ref.shape)
    assert np.abs(ours[0] - ref).max() < 1e-4


def test_encoder_graph_segment_equals_the_whole_clip_bit_for_bit(encoder_graph):
    # Streaming: a segment starting at a multiple of 16 mel frames, told its offset, computes
    # the same frames as the whole clip (away from its left edge), even where the whole clip's
    # length (384) is a rounding exception and the segment's (384 - 48) is not.
    _, session = encoder_graph
    mel = np.random.default_rng(9).uniform(-4, 4, (384, 80)).astype(np.float32)
    (whole,) = session.run(None, encoder_inputs(mel))
    (segment,) = session.run(None, encoder_inputs(mel[48:], 48))
    assert whole.shape[1] == segment.shape[1] + 15  # 48 mel frames = 15 video frames
    assert np.array_equal(segment[0, 10:], whole[0, 25:])


def test_serialized_pipeline_computes_the_same_mel(tmp_path, pipeline, speech):
    # The DALI backend loads the serialized form (GPU profile): it must be the same pipeline.
    from nvidia.dali import Pipeline

    path = tmp_path / "model.dali"
    mel_pipeline.build(batch_size=4, num_threads=1).serialize(filename=str(path))
    restored = Pipeline.deserialize(
        filename=str(path), batch_size=4, num_threads=1, device_id=None, prefetch_queue_depth=1
    )
    restored.build()
    audio = speech[0][:16000]
    assert np.array_equal(run_mel(restored, audio), run_mel(pipeline, audio))


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
def test_served_resampling_keeps_mel_windows_within_1e3_of_librosa(pipeline, rate):
    import librosa

    from lipsync_server.calibration import voice

    audio = voice.speech(3.0, rate, seed=2)  # with a white noise floor up to the input's Nyquist
    ours = run_mel(pipeline, anti_aliasing.band_limit(audio, rate), rate)  # as request_validator sends it
    theirs = reference.mel(librosa.resample(audio, orig_sr=rate, target_sr=16000, res_type="soxr_hq"))
    assert ours.shape == theirs.shape == (framing.mel_frame_count(framing.resampled_length(len(audio), rate)), 80)
    error = np.abs(reference.windows(ours) - reference.windows(theirs))
    # Bins with almost no energy sit on the log curve's steep part and differ more; per window
    # the mean difference stays under 1e-3 (measured: 8e-4 at 22.05 kHz), 99% of values under 1e-2.
    assert error.mean(axis=(1, 2, 3)).max() < 1e-3
    assert np.percentile(error, 99) < 1e-2


def test_served_resampling_removes_content_above_the_16khz_nyquist(pipeline):
    # A 20 kHz tone at 48 kHz cannot exist at 16 kHz; folded, it would show at 4 kHz.
    tone = (0.5 * np.sin(2 * np.pi * 20_000 * np.arange(48_000) / 48_000)).astype(np.float32)
    assert run_mel(pipeline, anti_aliasing.band_limit(tone, 48_000), 48_000).max() < -1.0  # librosa/soxr: -1.7
    # DALI alone folds it (the reason for band_limit: remove it once DALI filters by itself).
    assert run_mel(pipeline, tone, 48_000).max() > 2.0


def test_band_limit_keeps_length_timing_and_16khz_audio():
    rate = 44_100
    click = np.zeros(4410, np.float32)
    click[2000] = 1.0
    limited = anti_aliasing.band_limit(click, rate)
    assert limited.shape == click.shape and int(np.argmax(limited)) == 2000  # linear phase, no delay
    speech = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    assert anti_aliasing.band_limit(speech, 16000) is speech
