"""Audio of any rate to the server's 16 kHz, chunk by chunk as a stream arrives."""

import av
import numpy as np

from lipsync_protocol import framing


class StreamResampler:
    """Resamples a stream to 16 kHz chunk by chunk (FFmpeg's resampler keeps its state); at the
    end (push(None)) the output has the length the server's resampling would give the input."""

    def __init__(self, rate: int):
        self.rate = rate
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=framing.SAMPLE_RATE)
        self.taken = self.given = 0

    def push(self, samples: np.ndarray | None) -> np.ndarray:
        frame = None
        if samples is not None:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = self.rate
            self.taken += samples.size
        out = [f.to_ndarray().reshape(-1) for f in self.resampler.resample(frame)]
        if samples is None:  # FFmpeg's flush can fall a sample short of that length
            out.append(
                np.zeros(max(0, framing.resampled_length(self.taken, self.rate) - self.given - sum(map(len, out))))
            )
        resampled = np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
        self.given += resampled.size
        return resampled
