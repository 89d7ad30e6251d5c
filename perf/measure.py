"""Timed measurements for perf/bench.py: the ceiling, the baseline, the server under load."""

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import tritonclient.grpc as grpcclient

from lipsync import framing
from lipsync.client import LipsyncClient, infer_inputs
from lipsync_server.audio import mel_pipeline
from lipsync_server.avatars import compositing
from lipsync_server.avatars.media import AvatarMedia
from lipsync_server.demo import synthetic
from lipsync_server.launcher import processes
from lipsync_server.networks.exported import face_mask


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def bare_networks_fps(encoder_onnx: Path, unet_onnx: Path, mel: np.ndarray, batch: int, threads: int) -> float:
    """(a) The ceiling: encoder then UNet in ONNX Runtime, one process, the served batch and threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    encoder = ort.InferenceSession(str(encoder_onnx), options, providers=["CPUExecutionProvider"])
    unet = ort.InferenceSession(str(unet_onnx), options, providers=["CPUExecutionProvider"])
    offset = np.zeros((1, 1), np.int64)
    features = encoder.run(None, {"MEL": mel[None], "MEL_OFFSET": offset})[0][0]
    faces = np.random.default_rng(0).integers(0, 256, (batch, 320, 320, 3), dtype=np.uint8)
    # FACE_RGB only: the served pipeline asks the UNet for nothing else.
    unet.run(["FACE_RGB"], {"FACE": faces, "AUDIO_FEATURES": features[:batch]})  # warm-up
    start = time.perf_counter()
    features = encoder.run(None, {"MEL": mel[None], "MEL_OFFSET": offset})[0][0]
    for i in range(0, len(features), batch):
        part = features[i : i + batch]
        unet.run(["FACE_RGB"], {"FACE": faces[: len(part)], "AUDIO_FEATURES": part})
    return len(features) / (time.perf_counter() - start)


def sequential_fps(audio: np.ndarray, encoder, unet, media: AvatarMedia, frames: int, threads: int) -> float:
    """(c) What a user starts from: the reference's loop in PyTorch eager, frame by frame."""
    torch.set_num_threads(threads)
    pipe = mel_pipeline.build(batch_size=1, num_threads=1)
    pipe.build()
    start = time.perf_counter()
    (mel,) = mel_pipeline.run(pipe, [audio], [framing.SAMPLE_RATE])
    windows = np.stack([mel[s : s + framing.WINDOW].T[None] for s in framing.window_starts(mel.shape[0])]).astype(
        np.float32
    )
    with torch.no_grad():
        vectors = encoder(torch.from_numpy(windows)).numpy()
        padded = np.concatenate(
            [np.zeros((8, 512), np.float32), vectors[:1], vectors, vectors[-1:], np.zeros((8, 512), np.float32)]
        )
        for i in range(frames):
            index = framing.pingpong(i, len(media))
            background = media.background(index)
            crop = torch.from_numpy(media.faces[index].transpose(2, 0, 1).astype(np.float32) / 255.0)
            masked = crop * face_mask()[0]
            raw = unet(torch.cat([crop, masked])[None], torch.from_numpy(padded[i : i + 16].reshape(1, 32, 16, 16)))[0]
            face = (raw.numpy() * 255).astype(np.uint8).transpose(1, 2, 0)[..., ::-1]
            compositing.encode_jpeg(compositing.paste_face(background, media.rects[index], face), 75)
    return frames / (time.perf_counter() - start)


def ensemble_sweep(url: str, audio: np.ndarray, levels: list[int], rounds: int) -> list[dict]:
    """(b) The ensemble end to end over gRPC, `rounds` requests per client at each concurrency."""
    client = LipsyncClient(url)
    client.render(audio[: framing.SAMPLE_RATE], framing.SAMPLE_RATE, "demo", synthetic.BENCHMARK_VERSION)  # warm-up
    results = []
    for level in levels:
        latencies: list[float] = []

        def one(_, latencies=latencies):
            t = time.perf_counter()
            count = len(client.render(audio, framing.SAMPLE_RATE, "demo", synthetic.BENCHMARK_VERSION))
            latencies.append(time.perf_counter() - t)
            return count

        start = time.perf_counter()
        with ThreadPoolExecutor(level) as pool:
            frames = sum(pool.map(one, range(level * rounds)))
        elapsed = time.perf_counter() - start
        results.append(
            {
                "concurrency": level,
                "fps": frames / elapsed,
                "latency_p50_s": percentile(latencies, 50),
                "latency_p99_s": percentile(latencies, 99),
                "requests": len(latencies),
            }
        )
    return results


def audio_processing_ms(encoder_onnx: Path, samples: int, count: int, threads: int) -> list[float]:
    """(d) Mel (the DALI pipeline) + encoder (ONNX Runtime) for `samples` of audio, in process:
    the work the server's two audio steps do, without the transport around them."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    encoder = ort.InferenceSession(str(encoder_onnx), options, providers=["CPUExecutionProvider"])
    pipe = mel_pipeline.build(batch_size=1, num_threads=threads)
    pipe.build()
    audio = np.random.default_rng(1).uniform(-0.3, 0.3, samples).astype(np.float32)
    timings = []
    for _ in range(count + 5):
        t = time.perf_counter()
        (mel,) = mel_pipeline.run(pipe, [audio], [framing.SAMPLE_RATE])
        encoder.run(None, {"MEL": mel[None], "MEL_OFFSET": np.zeros((1, 1), np.int64)})
        timings.append((time.perf_counter() - t) * 1000)
    return timings[5:]


def audio_latency_ms(url: str, samples: int, count: int) -> list[float]:
    """(d) Mel + encoder for `samples` of audio through the server's two audio models: two
    gRPC round trips from this client included."""
    client = grpcclient.InferenceServerClient(url)
    audio = np.random.default_rng(1).uniform(-0.3, 0.3, (1, samples)).astype(np.float32)
    timings = []
    for _ in range(count + 5):
        t = time.perf_counter()
        mel = _infer(client, "mel", {"AUDIO": audio, "SAMPLE_RATE": np.array([[16000]], np.int32)}, "MEL")
        _infer(client, "audio_encoder", {"MEL": mel, "MEL_OFFSET": np.zeros((1, 1), np.int64)}, "AUDIO_FEATURES")
        timings.append((time.perf_counter() - t) * 1000)
    return timings[5:]


def _infer(client, model: str, values: dict, output: str) -> np.ndarray:
    inputs = infer_inputs(grpcclient, ((name, value, _dtype(value)) for name, value in values.items()))
    return client.infer(model, inputs).as_numpy(output)


def _dtype(value: np.ndarray) -> str:
    return {np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64"}[value.dtype]


def server_rss_mb(pid: int) -> float:
    """Resident memory of tritonserver and every process below it (the python-backend stubs)."""
    return sum(processes.rss_kb(p) for p in processes.tree(pid)) / 1024


def shm_mb() -> float:
    return (
        sum(f.stat().st_size for f in Path("/dev/shm").iterdir() if f.is_file()) / 2**20
        if os.path.isdir("/dev/shm")
        else 0.0
    )


def load(url: str, audio: np.ndarray, requests: int, concurrency: int) -> int:
    """Sends `requests` small requests; returns how many failed."""
    client = LipsyncClient(url)

    def one(_):
        try:
            client.render(audio, framing.SAMPLE_RATE, "demo", synthetic.BENCHMARK_VERSION)
            return 0
        except Exception:
            return 1

    with ThreadPoolExecutor(concurrency) as pool:
        return sum(pool.map(one, range(requests)))


def summary(values: list[float]) -> dict:
    return {"p50": statistics.median(values), "p99": percentile(values, 99)} if values else {}
