"""Timed measurements for perf/bench.py: the ceiling, the baseline, the server under load."""

import math
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from lipsync.client import LipsyncClient
from lipsync.transport import infer_inputs
from lipsync_protocol import framing
from lipsync_server import runtimes
from lipsync_server.audio import mel_pipeline
from lipsync_server.audio.encoder_inputs import encoder_inputs
from lipsync_server.avatars import compositing
from lipsync_server.avatars.media import AvatarMedia
from lipsync_server.demo import synthetic
from lipsync_server.launcher import processes
from lipsync_server.networks.exported import face_mask


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def bare_networks_fps(
    encoder_onnx: Path, unet_onnx: Path, mel: np.ndarray, batch: int, threads: int, runtime: str, precision: str
) -> float:
    """(a) The ceiling: encoder then UNet in one process with the served runtimes (the encoder in
    fp32, the UNet at `precision`), the served batch and threads."""
    encoder = runtimes.open_session(encoder_onnx, runtime, runtimes.FP32, threads)
    unet = runtimes.open_session(unet_onnx, runtime, precision, threads, fixed_batch=1 if batch == 1 else 0)
    faces = np.random.default_rng(0).integers(0, 256, (batch, 320, 320, 3), dtype=np.uint8)
    _warm_up(encoder, unet, mel, faces, batch)
    frames = 0
    start = time.perf_counter()
    for face_rgb in _unet_batches(encoder, unet, mel, faces, batch):
        frames += len(face_rgb)
    return frames / (time.perf_counter() - start)


def networks_and_compositing_fps(
    encoder_onnx: Path, unet_onnx: Path, mel: np.ndarray, media: AvatarMedia, batch: int, threads: int, served: str
) -> float:
    """(a') The same work as the ensemble in one process without Triton: encoder, UNet on the
    avatar's own crops, then paste and JPEG on `threads` threads, as the compositor does."""
    runtime, precision = served.split()  # "openvino bf16"
    encoder = runtimes.open_session(encoder_onnx, runtime, runtimes.FP32, threads)
    unet = runtimes.open_session(unet_onnx, runtime, precision, threads, fixed_batch=1 if batch == 1 else 0)
    count = len(media)
    for index in range(count):
        media.background(index)  # decoded once, as the compositor's cache holds them
    faces = np.ascontiguousarray(media.faces[[framing.pingpong(i, count) for i in range(batch)]])
    frames = 0

    def composite(item):
        position, face = item
        index = framing.pingpong(position, count)
        return compositing.encode_jpeg(
            compositing.paste_face(media.background(index), media.rects[index], face, media.paste), 75
        )

    _warm_up(encoder, unet, mel, faces, batch)
    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        for face_rgb in _unet_batches(encoder, unet, mel, faces, batch):
            list(pool.map(composite, enumerate(face_rgb, start=frames)))
            frames += len(face_rgb)
        return frames / (time.perf_counter() - start)


def _warm_up(encoder, unet, mel: np.ndarray, faces: np.ndarray, batch: int) -> None:
    """One encoder run and one UNet batch before the clock starts: first runs allocate."""
    features = encoder.run(["AUDIO_FEATURES"], encoder_inputs(mel))[0][0]
    unet.run(["FACE_RGB"], {"FACE": faces, "AUDIO_FEATURES": features[:batch]})


def _unet_batches(encoder, unet, mel: np.ndarray, faces: np.ndarray, batch: int):
    """Encodes the clip, then yields the UNet's FACE_RGB batch by batch (the served output)."""
    features = encoder.run(["AUDIO_FEATURES"], encoder_inputs(mel))[0][0]
    for i in range(0, len(features), batch):
        part = features[i : i + batch]
        yield unet.run(["FACE_RGB"], {"FACE": faces[: len(part)], "AUDIO_FEATURES": part})[0]


def cpu() -> dict:
    """The CPU's model and the ISA extensions the runtimes use: figures differ between machines."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")
    return {
        "model": model,
        "cores": os.cpu_count(),
        "isa": [flag for flag in wanted if flag in flags],
        "native_bf16": runtimes.has_native_bf16(),
    }


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
            compositing.encode_jpeg(compositing.paste_face(background, media.rects[index], face, media.paste), 75)
    return frames / (time.perf_counter() - start)


# A sweep measures the server saturated: every request of a level may wait for all the others.
SWEEP_MAX_WAIT_S = 600.0


def ensemble_sweep(url: str, audio: np.ndarray, levels: list[int], requests: int, repeats: int) -> list[dict]:
    """(b) The ensemble end to end over gRPC: at each concurrency at least `requests` requests
    (whole rounds of one per client), every level run `repeats` times, interleaved, so that the
    report can state the spread between the runs. Each request's bound (MAX_WAIT_MS) is
    SWEEP_MAX_WAIT_S; one the server refuses all the same is counted and the run goes on."""
    client = LipsyncClient(url)
    client.render(audio[: framing.SAMPLE_RATE], framing.SAMPLE_RATE, "demo", synthetic.BENCHMARK_VERSION)  # warm-up
    runs: dict[int, list[float]] = {level: [] for level in levels}
    latencies: dict[int, list[float]] = {level: [] for level in levels}
    refused: dict[int, int] = dict.fromkeys(levels, 0)
    for _ in range(repeats):
        for level in levels:

            def one(_, level=level):
                t = time.perf_counter()
                try:
                    count = len(
                        client.render(
                            audio, framing.SAMPLE_RATE, "demo", synthetic.BENCHMARK_VERSION, max_wait_s=SWEEP_MAX_WAIT_S
                        )
                    )
                except InferenceServerException as error:
                    if "UNAVAILABLE" not in str(error.status()):
                        raise
                    refused[level] += 1
                    return 0
                latencies[level].append(time.perf_counter() - t)
                return count

            start = time.perf_counter()
            with ThreadPoolExecutor(level) as pool:
                frames = sum(pool.map(one, range(level * math.ceil(requests / level))))
            runs[level].append(frames / (time.perf_counter() - start))
    return [
        {
            "concurrency": level,
            "fps": float(np.mean(runs[level])),
            "fps_runs": runs[level],
            "spread": (max(runs[level]) - min(runs[level])) / float(np.mean(runs[level])) if any(runs[level]) else 0.0,
            "latency_p50_s": percentile(latencies[level], 50),
            "latency_p99_s": percentile(latencies[level], 99),
            "requests": len(latencies[level]),
            "refused": refused[level],
        }
        for level in levels
    ]


def step_costs(before: dict[str, dict], after: dict[str, dict], frames: int) -> dict[str, dict]:
    """Per model (Triton's statistics between two snapshots): queue and compute ms per frame.
    face_generator's compute includes the avatar UNet calls it makes (BLS)."""
    costs = {}
    for model, now in after.items():
        then = before.get(model, {"requests": 0, "avg_queue_ms": 0.0, "avg_compute_ms": 0.0})
        requests = now["requests"] - then["requests"]
        if requests <= 0:
            continue
        queue = now["avg_queue_ms"] * now["requests"] - then["avg_queue_ms"] * then["requests"]
        compute = now["avg_compute_ms"] * now["requests"] - then["avg_compute_ms"] * then["requests"]
        costs[model] = {
            "requests": requests,
            "queue_ms_per_frame": queue / frames,
            "compute_ms_per_frame": compute / frames,
        }
    return costs


def audio_processing_ms(encoder_onnx: Path, samples: int, count: int, threads: int, runtime: str) -> list[float]:
    """(d) Mel (the DALI pipeline) + encoder (the served runtime) for `samples` of audio, in
    process: the work the server's two audio steps do, without the transport around them."""
    encoder = runtimes.open_session(encoder_onnx, runtime, runtimes.FP32, threads)
    pipe = mel_pipeline.build(batch_size=1, num_threads=threads)
    pipe.build()
    audio = np.random.default_rng(1).uniform(-0.3, 0.3, samples).astype(np.float32)
    timings = []
    for _ in range(count + 5):
        t = time.perf_counter()
        (mel,) = mel_pipeline.run(pipe, [audio], [framing.SAMPLE_RATE])
        encoder.run(["AUDIO_FEATURES"], encoder_inputs(mel))
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
        _infer(client, "audio_encoder", encoder_inputs(mel[0]), "AUDIO_FEATURES")
        timings.append((time.perf_counter() - t) * 1000)
    return timings[5:]


def _infer(client, model: str, values: dict, output: str) -> np.ndarray:
    tensors = ((name, value, np_to_triton_dtype(value.dtype)) for name, value in values.items())
    inputs = infer_inputs(grpcclient, tensors)
    return client.infer(model, inputs).as_numpy(output)


def server_rss_mb(pid: int) -> float:
    """Resident memory of tritonserver and every process below it (the python-backend stubs)."""
    return processes.tree_memory_mb(pid)


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
            client.render(audio, framing.SAMPLE_RATE, "demo", synthetic.BENCHMARK_VERSION, max_wait_s=SWEEP_MAX_WAIT_S)
            return 0
        except Exception:
            return 1

    with ThreadPoolExecutor(concurrency) as pool:
        return sum(pool.map(one, range(requests)))


def summary(values: list[float]) -> dict:
    return {"p50": statistics.median(values), "p99": percentile(values, 99)} if values else {}
