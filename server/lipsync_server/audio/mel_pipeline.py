"""The DALI pipeline that turns a waveform into the SyncTalk_2D mel spectrogram.

One definition serves both profiles: the GPU profile's DALI backend serializes it when the model
loads (model_repository/mel/1/dali.py); the CPU profile builds it with DALI's Python
API inside a python-backend model.
Parameters are the reference's (librosa >= 0.10 defaults: periodic Hann, centred frames with
zero padding); output is [T, 80], normalised to [-4, 4].
"""

import numpy as np
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali import math as dmath

from lipsync_protocol import framing

PREEMPHASIS = 0.97
FMIN, FMAX = 55.0, 7600.0
MIN_LEVEL_DB = -100.0  # 20*log10(1e-5)
REF_LEVEL_DB = 20.0


def periodic_hann(length: int) -> list[float]:
    n = np.arange(length)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)).astype(np.float32).tolist()


def mel_graph(audio, rate):
    """Waveform (any rate) -> normalised mel [T, 80]; `rate` is the input's sample rate."""
    in_rate = fn.cast(fn.reshape(rate, shape=[]), dtype=types.FLOAT)
    audio = fn.audio_resample(audio, in_rate=in_rate, out_rate=float(framing.SAMPLE_RATE), dtype=types.FLOAT)
    audio = fn.preemphasis_filter(audio, preemph_coeff=PREEMPHASIS, border="zero")
    spectrum = fn.spectrogram(
        audio,
        nfft=framing.N_FFT,
        window_length=framing.N_FFT,
        window_step=framing.HOP,
        window_fn=periodic_hann(framing.N_FFT),
        center_windows=True,
        reflect_padding=False,
        power=1,
        layout="ft",
    )
    mel = fn.mel_filter_bank(
        spectrum,
        sample_rate=float(framing.SAMPLE_RATE),
        nfilter=framing.N_MELS,
        freq_low=FMIN,
        freq_high=FMAX,
        normalize=True,
        mel_formula="slaney",
    )
    db = fn.to_decibels(mel, multiplier=20.0, reference=1.0, cutoff_db=MIN_LEVEL_DB) - REF_LEVEL_DB
    # clip(8 * (S + 100) / 100 - 4, -4, 4)
    normalised = dmath.clamp((db - MIN_LEVEL_DB) * (8.0 / -MIN_LEVEL_DB) - 4.0, -4.0, 4.0)
    return fn.transpose(normalised, perm=[1, 0])


def mel_from_inputs(device: str = "cpu"):
    """The pipeline's body: external sources named like the Triton model's inputs."""
    audio = fn.external_source(name="AUDIO", dtype=types.FLOAT, ndim=1, device=device)
    rate = fn.external_source(name="SAMPLE_RATE", dtype=types.INT32, ndim=1, device="cpu")
    return mel_graph(audio, rate)


def build(batch_size: int, num_threads: int, device: str = "cpu"):
    """A pipeline that serves requests: one batch per run, no prefetching ahead of them."""
    device_id = 0 if device == "gpu" else None
    define = pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id, prefetch_queue_depth=1)
    return define(mel_from_inputs)(device)


def mel_of(audio: np.ndarray, rate: int = framing.SAMPLE_RATE) -> np.ndarray:
    """[T, 80] of one clip outside the server, exactly as the server computes it (with the
    request validator's band limit first); builds a pipeline per call."""
    from .anti_aliasing import band_limit

    pipe = build(batch_size=1, num_threads=1)
    pipe.build()
    return run(pipe, [band_limit(np.asarray(audio, np.float32), rate)], [rate])[0]


def run(pipeline, clips: list[np.ndarray], rates: list[int]) -> list[np.ndarray]:
    """Mel [T, 80] of each clip, in one run of a pipeline made by build()."""
    pipeline.feed_input("AUDIO", [np.asarray(clip, np.float32) for clip in clips])
    pipeline.feed_input("SAMPLE_RATE", [np.array([rate], np.int32) for rate in rates])
    (mel,) = pipeline.run()
    return [np.array(mel.at(i)) for i in range(len(clips))]
