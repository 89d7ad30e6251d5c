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


def walk(count: int, frames_in_dataset: int) -> list[int]:
    """The reference player's frame indices: it steps before reading, so it starts at frame 1."""
    last, index, stride, order = frames_in_dataset - 1, 0, 0, []
    for _ in range(count):
        if index > last - 1:
            stride = -1
        if index < 1:
            stride = 1
        index += stride
        order.append(index)
    return order


def crop_rect(lms_path) -> list[int]:
    """The crop square from a 110-point .lms file, with the reference's float -> int32 cast."""
    points = np.array([line.split(" ") for line in open(lms_path).read().splitlines()], dtype=np.float32).astype(
        np.int32
    )
    x1, x2, y1 = points[1][0], points[31][0], points[52][1]
    return [int(x1), int(y1), int(x2), int(y1 + x2 - x1)]


def unet_input(frame_bgr: np.ndarray, rect) -> np.ndarray:
    """[6, 320, 320]: the inner crop and its masked copy, /255, as the reference builds them."""
    import cv2

    x1, y1, x2, y2 = rect
    crop = cv2.resize(frame_bgr[y1:y2, x1:x2], (328, 328), interpolation=cv2.INTER_CUBIC)
    real = crop[4:324, 4:324].copy()
    masked = cv2.rectangle(real.copy(), (5, 5, 310, 305), (0, 0, 0), -1)
    return np.concatenate([real.transpose(2, 0, 1), masked.transpose(2, 0, 1)]).astype(np.float32) / 255.0


def paste(frame_bgr: np.ndarray, rect, raw: np.ndarray) -> np.ndarray:
    """The reference's uint8 truncation and bicubic paste-back of one [3, 320, 320] output."""
    import cv2

    x1, y1, x2, y2 = rect
    crop = cv2.resize(frame_bgr[y1:y2, x1:x2], (328, 328), interpolation=cv2.INTER_CUBIC)
    crop[4:324, 4:324] = np.array(raw.transpose(1, 2, 0) * 255, dtype=np.uint8)
    out = frame_bgr.copy()
    out[y1:y2, x1:x2] = cv2.resize(crop, (x2 - x1, y2 - y1), interpolation=cv2.INTER_CUBIC)
    return out


def render(wav16k: np.ndarray, frames_bgr: list, rects: list, encoder, unet) -> tuple[np.ndarray, list]:
    """The whole reference inference: raw outputs [F, 3, 320, 320] and composited BGR frames."""
    features = frame_features(encode(encoder, windows(mel(wav16k))))
    raws, composited = [], []
    for i, index in enumerate(walk(len(features), len(frames_bgr))):
        face = torch.from_numpy(unet_input(frames_bgr[index], rects[index])[None])
        with torch.no_grad():
            raw = unet(face, torch.from_numpy(features[i][None])).numpy()[0]
        raws.append(raw)
        composited.append(paste(frames_bgr[index], rects[index], raw))
    return np.stack(raws), composited
