"""GPU figures, the project's prepared GPU check: the served UNet graph at batch 1, 8 and 32 (the
avatars' max_batch_size), the served encoder graph on an 8 s clip, pasting and JPEG-encoding
1280x720 frames on the GPU, and the GPU memory one resident avatar holds. Run it on any machine
with CUDA (PyTorch is all it needs; a few minutes):

    PYTHONPATH=client:server python perf/gpu_bench.py          # writes out/bench/gpu.json and gpu.md
    scripts/gpu_check.sh                                        # the same, as a lent GPU machine runs it

The network runs as a TensorRT engine built from the exported ONNX graph when the `tensorrt`
package is installed, otherwise as PyTorch fp16 (autocast) replayed from a CUDA graph per batch
size. The encoder runs as served (fp32, TF32 off) and at fp16, each from a CUDA graph. Memory per
avatar: its weights at fp16 and the peak the network adds at each batch size. Compositing
follows compositing.py on the GPU: crop square -> 328 (bicubic) -> inner 320 replaced -> back to
the square's size -> JPEG with nvJPEG (torchvision.io.encode_jpeg on CUDA tensors). Frames/s of
"network + compositing" is one stream doing both in turn, no overlap. `--device cpu` runs the
same code on the CPU (float32, Pillow JPEG) to check the script itself.
"""

import argparse
import io
import json
import re
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lipsync_protocol import framing
from lipsync_server.audio.encoder_inputs import encoder_inputs
from lipsync_server.crop import BORDER, CROP, feather_weights
from lipsync_server.demo import synthetic
from lipsync_server.networks import unet_training
from lipsync_server.networks.audio_encoder import AudioEncoder
from lipsync_server.networks.exported import ServingAudioEncoder, ServingUNet
from lipsync_server.networks.unet import LipSyncUNet

ROOT = Path(__file__).resolve().parents[1]


def compositor_jpeg_quality() -> int:
    """The compositor's JPEG quality, read from its config without protobuf: the GPU machine that
    runs this has PyTorch, not tritonclient's model-config protobuf."""
    config = (ROOT / "model_repository" / "compositor" / "config.pbtxt").read_text()
    found = re.search(r'key: "jpeg_quality" value: \{ string_value: "(\d+)"', config)
    if found is None:
        raise SystemExit("model_repository/compositor/config.pbtxt sets no jpeg_quality")
    return int(found.group(1))


QUALITY = compositor_jpeg_quality()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--clip-seconds", type=float, default=8.0, help="the encoder's clip")
    parser.add_argument("--iterations", type=int, default=20, help="timed runs per batch size")
    parser.add_argument("--checkpoint", type=Path, help="UNet checkpoint (default: random weights; speed is the same)")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "bench")
    parser.add_argument("--train-width", type=int, default=32, help="the training step's UNet width (reference: 32)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device here; nothing measured", file=sys.stderr)
        return 2

    unet = _unet(args.checkpoint).to(device)
    if device.type == "cuda" and _has_tensorrt():
        engine, (network, peaks) = "TensorRT fp16", _tensorrt(unet, max(args.batches))
    elif device.type == "cuda":
        engine, (network, peaks) = "PyTorch fp16 + CUDA graphs", _cuda_graphs(unet, args.batches, device)
    else:
        engine, (network, peaks) = "PyTorch fp32 (CPU check)", (_eager(unet), {})
    frames = list(synthetic.avatar_frames(count=max(args.batches), seed=0))
    backgrounds = [torch.from_numpy(np.array(frame)).to(device) for frame, _ in frames]
    rects = [rect for _, rect in frames]
    rng = np.random.default_rng(0)

    rows = []
    for batch in args.batches:
        faces = torch.from_numpy(rng.integers(0, 256, (batch, 320, 320, 3), dtype=np.uint8)).to(device)
        audio = torch.from_numpy(rng.standard_normal((batch, 32, 16, 16)).astype(np.float32)).to(device)
        pixels = network(faces, audio)  # warm-up (and the faces that are pasted below)
        _composite(backgrounds[:batch], rects[:batch], pixels)
        net_s = _timed(partial(network, faces, audio), args.iterations, device)
        paste_s = _timed(partial(_composite, backgrounds[:batch], rects[:batch], pixels), args.iterations, device)
        rows.append(
            {
                "batch": batch,
                "network_fps": batch / net_s,
                "compositing_fps": batch / paste_s,
                "network_and_compositing_fps": batch / (net_s + paste_s),
                "network_peak_mb": peaks.get(batch, 0.0),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    encoder = _encoder_rows(device, args.clip_seconds, args.iterations)
    training_step_s = _training_step_s(device, args.train_width, args.iterations)
    print(json.dumps({"training_step_s": training_step_s, "width": args.train_width}), flush=True)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    result = {
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "engine": engine,
        "jpeg": _jpeg_engine(device),
        "frame_size": "1280x720",
        "weights_fp16_mb": sum(p.numel() for p in unet.parameters()) * 2 / 2**20,
        "rows": rows,
        "encoder": encoder,
        "training": {"width": args.train_width, "batch": TRAIN_BATCH, "step_s": training_step_s},
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "gpu.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# GPU figures: {name}",
        "",
        f"Network: {engine}; JPEG: {result['jpeg']}; frames 1280x720.",
        "",
        "| batch | network frames/s | compositing + JPEG frames/s | both in turn, frames/s |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['batch']} | {r['network_fps']:.1f} | {r['compositing_fps']:.1f} "
        f"| {r['network_and_compositing_fps']:.1f} |"
        for r in rows
    ]
    lines += [
        "",
        f"Memory per resident avatar: {result['weights_fp16_mb']:.1f} MiB of fp16 weights, plus what the network",
        "adds at each batch size (peak allocated over the weights):",
        "",
        "| batch | network peak MiB |",
        "| --- | --- |",
        *(f"| {r['batch']} | {r['network_peak_mb']:.0f} |" for r in rows),
        "",
        f"Audio encoder, one {args.clip_seconds:g} s clip ({encoder[0]['frames']} frames), CUDA graph:",
        "",
        "| precision | ms per clip |",
        "| --- | --- |",
        *(f"| {r['precision']} | {r['ms_per_clip']:.2f} |" for r in encoder),
        "",
        f"Avatar creation's training step (`networks/unet_training.py`) at width {args.train_width}, batch "
        f"{TRAIN_BATCH}: {training_step_s * 1000:.0f} ms; 1000 steps (the default) take about "
        f"{training_step_s * 1000 / 60:.1f} min.",
        "",
        f"torch {result['torch']}, CUDA {result['cuda']}.",
    ]
    (args.output / "gpu.md").write_text("\n".join(lines) + "\n")
    return 0


def _encoder_rows(device, seconds: float, iterations: int) -> list[dict]:
    """The served encoder graph on one clip: as served (fp32, TF32 off) and at fp16."""
    torch.manual_seed(0)
    graph = ServingAudioEncoder(AudioEncoder().eval()).eval().to(device)
    mel_frames = framing.mel_frame_count(round(seconds * framing.SAMPLE_RATE))
    rng = np.random.default_rng(1)
    inputs = encoder_inputs(rng.uniform(-4, 4, (mel_frames, 80)).astype(np.float32))
    mel, starts = (torch.from_numpy(inputs[name]).to(device) for name in ("MEL", "WINDOW_STARTS"))
    rows = []
    for precision, dtype in (("fp32", None), ("fp16", torch.float16)):
        run = _captured(graph, (mel, starts), dtype, device)
        frames = run().shape[1]
        rows.append({"precision": precision, "frames": frames, "ms_per_clip": 1000 * _timed(run, iterations, device)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _captured(module, inputs: tuple, dtype, device):
    """`module` on fixed inputs, replayed from a CUDA graph (eager on the CPU)."""
    autocast = torch.autocast(device.type, dtype, enabled=dtype is not None and device.type == "cuda")
    if device.type != "cuda":

        def eager():
            with torch.no_grad():
                return module(*inputs)

        return eager
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # as the plan: --noTF32
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), autocast, torch.cuda.stream(stream):
        for _ in range(3):
            module(*inputs)
    torch.cuda.current_stream().wait_stream(stream)
    cuda_graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), autocast, torch.cuda.graph(cuda_graph):
        output = module(*inputs)

    def replay():
        cuda_graph.replay()
        return output

    return replay


TRAIN_BATCH = 8  # avatar creation's default batch (creation/training.py's Plan)


def _training_step_s(device, width: int, iterations: int) -> float:
    """Seconds of one training step of a person's UNet at `width` (random data: the cost is the
    same), as avatar creation runs it."""
    unet = LipSyncUNet(width).to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(unet.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    step = unet_training.Step(unet, unet_training.mouth_weight((100, 180, 220, 260)).to(device))
    faces = torch.rand(TRAIN_BATCH, 3, 320, 320, device=device)
    audio = torch.rand(TRAIN_BATCH, 32, 16, 16, device=device)
    unet.train()

    def one() -> None:
        out = step.predict(faces.roll(1, 0), faces, audio)
        unet_training.descend(step.loss(out, faces), optimizer, schedule)

    one()  # warm-up
    return _timed(one, max(1, iterations // 4), device)


def _memory_mb(device, reset: bool = False) -> float:
    if device.type != "cuda":
        return 0.0
    torch.cuda.synchronize(device)
    if reset:
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    return torch.cuda.max_memory_allocated(device) / 2**20


def _unet(checkpoint: Path | None) -> LipSyncUNet:
    if checkpoint:
        from lipsync_server.networks.checkpoints import load_unet

        return load_unet(checkpoint)
    torch.manual_seed(0)
    return LipSyncUNet().eval()


def _eager(unet):
    graph = ServingUNet(unet).eval()

    def run(faces, audio):
        with torch.no_grad():
            return graph(faces, audio)[1]

    return run


def _cuda_graphs(unet, batches: list[int], device):
    """One captured graph per batch size: fp16 convolutions with no per-launch CPU overhead.
    Also returns, per batch size, the memory its warm-up and capture allocated over the weights."""
    graph_module = ServingUNet(unet).eval()
    captured, peaks = {}, {}
    for batch in batches:
        base = _memory_mb(device, reset=True)
        faces = torch.zeros(batch, 320, 320, 3, dtype=torch.uint8, device=device)
        audio = torch.zeros(batch, 32, 16, 16, device=device)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.autocast("cuda", torch.float16, cache_enabled=False), torch.cuda.stream(stream):
            for _ in range(3):  # warm-up on a side stream, as graph capture requires
                graph_module(faces, audio)
        torch.cuda.current_stream().wait_stream(stream)
        cuda_graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.autocast("cuda", torch.float16, cache_enabled=False), torch.cuda.graph(cuda_graph):
            output = graph_module(faces, audio)[1]
        captured[batch] = (cuda_graph, faces, audio, output)
        peaks[batch] = _memory_mb(device) - base

    def run(faces, audio):
        cuda_graph, static_faces, static_audio, output = captured[faces.shape[0]]
        static_faces.copy_(faces)
        static_audio.copy_(audio)
        cuda_graph.replay()
        return output

    return run, peaks


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def _tensorrt(unet, max_batch: int):
    """A TensorRT fp16 engine from the same ONNX graph the server's plans are built from."""
    import tensorrt as trt

    from lipsync_server.networks.export import export_unet

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = Path(scratch) / "model.onnx"
        export_unet(unet.cpu(), onnx_path)
        unet.cuda()
        if not parser.parse(onnx_path.read_bytes()):
            raise RuntimeError(f"TensorRT cannot parse the UNet: {parser.get_error(0)}")
    config = builder.create_builder_config()
    if hasattr(trt.BuilderFlag, "FP16"):  # TensorRT 10; from 11 networks are strongly typed
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, shape in (("FACE", (320, 320, 3)), ("AUDIO_FEATURES", (32, 16, 16))):
        profile.set_shape(name, (1, *shape), (max_batch, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    engine = trt.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(network, config))
    context = engine.create_execution_context()
    workspace_mb = engine.device_memory_size / 2**20  # activations at the profile's largest batch

    def run(faces, audio):
        output = torch.empty(faces.shape[0], 320, 320, 3, dtype=torch.uint8, device=faces.device)
        raw = torch.empty(faces.shape[0], 3, 320, 320, device=faces.device)
        for name, tensor in (("FACE", faces), ("AUDIO_FEATURES", audio)):
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        context.set_tensor_address("FACE_RGB", output.data_ptr())
        context.set_tensor_address("FACE_RAW", raw.data_ptr())
        context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
        return output

    return run, {max_batch: workspace_mb}


def _composite(backgrounds, rects, faces) -> list[bytes]:
    """compositing.paste_face (feathered, the default) + encode_jpeg for a batch, on the
    tensors' device."""
    frames = []
    for background, (x1, y1, x2, y2), face in zip(backgrounds, rects, faces):
        square = background[y1:y2, x1:x2].permute(2, 0, 1)[None].float()
        crop = F.interpolate(square, size=(CROP, CROP), mode="bicubic", align_corners=False)
        crop[0, :, BORDER:-BORDER, BORDER:-BORDER] = face.permute(2, 0, 1).float()
        back = F.interpolate(crop, size=(y2 - y1, x2 - x1), mode="bicubic", align_corners=False)
        weight = torch.outer(
            torch.tensor(feather_weights(y2 - y1), device=square.device),
            torch.tensor(feather_weights(x2 - x1), device=square.device),
        )
        blended = square[0] + weight * (back[0].round().clamp(0, 255) - square[0])
        frame = background.permute(2, 0, 1).clone()
        frame[:, y1:y2, x1:x2] = blended.round().to(torch.uint8)
        frames.append(frame)
    return _encode(frames)


def _encode(frames) -> list[bytes]:
    if frames[0].is_cuda:
        from torchvision.io import encode_jpeg

        return [bytes(data.cpu().numpy()) for data in encode_jpeg(frames, quality=QUALITY)]
    encoded = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=QUALITY)
        encoded.append(buffer.getvalue())
    return encoded


def _jpeg_engine(device) -> str:
    return "nvJPEG (torchvision)" if device.type == "cuda" else "Pillow (CPU)"


def _timed(work, iterations: int, device) -> float:
    """Seconds per call, the device drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iterations):
        work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / iterations


if __name__ == "__main__":
    sys.exit(main())
