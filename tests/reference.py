"""An independent reference of SyncTalk_2D's audio path, written from REFERENCE.md section 2 with
librosa and plain loops. It deliberately shares no code with the lipsync package."""
import librosa
import numpy as np
import torch
from scipy import signal


def mel(wav: np.ndarray) -> np.ndarray:
    """[T, 80] normalised mel of 16 kHz audio."""
    emphasised = signal.lfilter([1, -0.97], [1], wav)
    stft = librosa.stft(y=emphasised, n_fft=800, hop_length=200, win_length=800)
    basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    db = 20 * np.log10(np.maximum(1e-5, basis @ np.abs(stft))) - 20
    return np.clip(8 * (db + 100) / 100 - 4, -4, 4).T


def windows(mel_t80: np.ndarray) -> np.ndarray:
    """[N, 1, 80, 16] encoder windows, with the reference's float arithmetic and end clamping."""
    t = mel_t80.shape[0]
    count = int((t - 16) / 80.0 * 25.0) + 2
    out = []
    for i in range(count):
        start = int(80.0 * (i / 25.0))
        if start + 16 > t:
            start = t - 16
        out.append(mel_t80[start : start + 16].T[None])
    return np.stack(out).astype(np.float32)


def frame_features(vectors: np.ndarray) -> np.ndarray:
    """[N+2, 32, 16, 16]: first/last repeated once, then 16 vectors per frame, zero-filled."""
    padded = np.concatenate([vectors[:1], vectors, vectors[-1:]])
    frames = []
    for i in range(len(padded)):
        window = np.zeros((16, padded.shape[1]), np.float32)
        for j, k in enumerate(range(i - 8, i + 8)):
            if 0 <= k < len(padded):
                window[j] = padded[k]
        frames.append(window.reshape(32, 16, 16))
    return np.stack(frames)


def encode(encoder: torch.nn.Module, mel_windows: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return encoder(torch.from_numpy(mel_windows)).numpy()
