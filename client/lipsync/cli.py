"""`lipsync`: render speech to an MP4, manage avatars, check the server.

lipsync render speech.wav --avatar demo -o out.mp4
lipsync stream - --rate 16000 --avatar demo -o out.mp4     # PCM from a pipe, as it arrives
lipsync avatars | load NAME | unload NAME | stats | health
lipsync web | agent                                         # the web page; the example voice agent

Adding avatars and versions to a server's repository is the server's command: lipsync-server.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm
from tritonclient.utils import InferenceServerException

from lipsync_protocol import framing, messages

from . import media_io
from .client import LipsyncClient

# A version added to a GPU server's repository has no TensorRT plan until one is built for it.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lipsync", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=None, help="server address (default 127.0.0.1:8001 for gRPC, :8000 for HTTP)")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument(
        "--admin-key",
        default=None,
        help="the server's administrator key, for avatars/load/unload (default: $LIPSYNC_ADMIN_KEY, "
        "else for a server on this machine the key file that lipsync-server writes)",
    )
    parser.add_argument(
        "--inference-key",
        default=None,
        help="the server's inference key, for rendering over HTTP (default: $LIPSYNC_INFERENCE_KEY, "
        "else for a server on this machine the key file that lipsync-server writes)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    render = commands.add_parser("render", help="render an audio file to an MP4 with sound")
    render.add_argument("audio", type=Path, help="WAV, FLAC, MP3 or a video file's audio, any sample rate")
    render.add_argument("--avatar", required=True)
    render.add_argument("--version", type=int, default=None, help="avatar weights version (default: latest)")
    render.add_argument("--start-frame", type=int, default=0)
    render.add_argument("--chunk-seconds", type=float, default=4.0, help="audio per request")
    render.add_argument("--in-flight", type=int, default=2, help="requests in flight at once")
    render.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="an .mp4 (H.264 + AAC), or a folder that receives 000000.jpg, 000001.jpg, ...",
    )

    live = commands.add_parser("stream", help="render audio as it arrives (a file read in chunks, or a pipe)")
    live.add_argument("audio", help="an audio file, or - for raw 16-bit little-endian mono PCM on stdin")
    live.add_argument("--rate", type=int, default=16000, help="sample rate of the PCM on stdin")
    live.add_argument("--avatar", required=True)
    live.add_argument("--version", type=int, default=None)
    live.add_argument("--start-frame", type=int, default=0)
    live.add_argument("--chunk-ms", type=int, default=200, help="audio per chunk")
    live.add_argument("--realtime", action="store_true", help="send a file's chunks at the pace of speech")
    live.add_argument("-o", "--output", type=Path, required=True, help="an .mp4, or a folder for JPEG frames")

    commands.add_parser("avatars", help="list avatars, their versions and states")
    for verb in ("load", "unload"):
        sub = commands.add_parser(verb, help=f"{verb} an avatar on the server")
        sub.add_argument("name")
    commands.add_parser("stats", help="per-model request counts and latencies")
    commands.add_parser("health", help="server liveness, readiness and avatars")
    page = commands.add_parser("web", help="serve the web page (live microphone, files) for this server")
    page.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    page.add_argument("--port", type=int, default=8080)
    page.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        help="another origin the page is opened from, e.g. https://lipsync.example.com behind a TLS proxy",
    )
    page.add_argument(
        "--max-sessions",
        type=int,
        default=16,
        help="pages connected at once, counting those whose requests are still finishing after they went",
    )
    page.add_argument(
        "--max-file-seconds", type=float, default=300.0, help="the longest audio file mode decodes and renders"
    )

    talk = commands.add_parser("agent", help="serve an example voice agent with the avatar as its face (WebRTC page)")
    talk.add_argument("--avatar", default="demo")
    talk.add_argument("--version", type=int, default=None, help="the avatar's version (default: the newest)")
    talk.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    talk.add_argument("--port", type=int, default=8090)
    talk.add_argument("--allow-origin", action="append", default=[], help="another origin the page is opened from")
    talk.add_argument("--max-sessions", type=int, default=4, help="conversations at once")
    talk.add_argument("--video-size", type=video_size, default=None, help="WIDTHxHEIGHT sent (default: 640x360)")
    talk.add_argument("--echo", action="store_true", help="also repeat each of the user's utterances")

    args = parser.parse_args(argv)
    url = args.url or ("127.0.0.1:8001" if args.protocol == "grpc" else "127.0.0.1:8000")
    if args.command == "web":
        try:
            from .web.gateway import serve
        except ImportError as error:
            print(f"lipsync web: {error}: pip install 'triton-lipsync-client[web]'", file=sys.stderr)
            return 1
        keys = (args.admin_key, args.inference_key)
        limits = (args.max_sessions, args.max_file_seconds)
        return serve(url, args.protocol, keys, args.host, args.port, args.allow_origin, *limits)
    if args.command == "agent":
        return agent(url, args)
    try:
        with LipsyncClient(url, args.protocol, admin_key=args.admin_key, inference_key=args.inference_key) as client:
            return COMMANDS[args.command](client, args)
    except InferenceServerException as error:
        print(f"lipsync: server error: {error.message()}", file=sys.stderr)
        if "model.plan" in (error.message() or ""):
            print(f"lipsync: {messages.PLAN_HINT}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"lipsync: {error}", file=sys.stderr)
        return 1


def video_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text[:32]!r}") from None
    if not (16 <= width <= 3840 and 16 <= height <= 2160 and width % 2 == 0 and height % 2 == 0):
        raise argparse.ArgumentTypeError(f"{width}x{height}: even sizes from 16x16 to 3840x2160")
    return width, height


def agent(url: str, args) -> int:
    try:
        from .agent.app import VIDEO_SIZE, Agent, serve
        from .web.guard import origins_for
    except ImportError as error:
        print(f"lipsync agent: {error}: pip install 'triton-lipsync-client[agent]'", file=sys.stderr)
        return 1
    talk = Agent(
        url,
        args.avatar,
        args.version,
        keys=(args.admin_key, args.inference_key),
        origins=origins_for(args.host, args.port, args.allow_origin),
        max_sessions=args.max_sessions,
        video_size=args.video_size or VIDEO_SIZE,
        echo=args.echo,
    )
    return serve(talk, args.host, args.port)


def _render(client: LipsyncClient, args) -> int:
    audio, rate = media_io.read_audio(args.audio)
    expected = framing.frame_count(framing.resampled_length(len(audio), rate))
    frames = client.render_chunks(
        audio, rate, args.avatar, args.version, args.start_frame, args.chunk_seconds, args.in_flight
    )
    with tqdm(total=expected, unit="frame", desc=f"rendering {args.avatar}") as progress:

        def counted():
            for jpeg in frames:
                progress.update(1)
                yield jpeg

        if args.output.suffix.lower() == ".mp4":
            written = media_io.write_mp4(args.output, counted(), audio, rate)
        else:
            written = media_io.write_jpegs(args.output, counted())
    print(f"wrote {args.output}: {written} frames, {len(audio) / rate:.2f} s of audio")
    return 0


def _stream(client: LipsyncClient, args) -> int:
    received: list[np.ndarray] = []
    if args.audio == "-":
        rate, source = args.rate, _pcm_chunks(sys.stdin.buffer, args.rate * args.chunk_ms // 1000)
    else:
        audio, rate = media_io.read_audio(Path(args.audio))
        step = max(1, rate * args.chunk_ms // 1000)
        source = (audio[i : i + step] for i in range(0, len(audio), step))

    def arriving():
        started = time.monotonic()
        for chunk in source:
            received.append(chunk)
            if args.realtime:
                ahead = sum(len(c) for c in received) / rate - (time.monotonic() - started)
                time.sleep(max(0.0, ahead))
            yield chunk

    frames = client.stream(arriving(), rate, args.avatar, args.version, args.start_frame)
    first_frame_at: list[float] = []
    started = time.monotonic()

    def counted():
        with tqdm(unit="frame", desc=f"streaming {args.avatar}") as progress:
            for jpeg in frames:
                if not first_frame_at:
                    first_frame_at.append(time.monotonic() - started)
                progress.update(1)
                yield jpeg

    if args.output.suffix.lower() == ".mp4":
        # The MP4's sound track is muxed after the video, once the stream has ended.
        written = media_io.write_mp4(args.output, counted(), lambda: np.concatenate(received), rate)
    else:
        written = media_io.write_jpegs(args.output, counted())
    first = f", first frame after {first_frame_at[0]:.2f} s" if first_frame_at else ""
    print(f"wrote {args.output}: {written} frames{first}")
    return 0


def _pcm_chunks(stream, samples: int):
    while block := stream.read(2 * samples):
        yield np.frombuffer(block[: len(block) // 2 * 2], "<i2").astype(np.float32) / 32768.0


def _avatars(client: LipsyncClient, args) -> int:
    for avatar in client.avatars():
        versions = ", ".join(
            f"{v}: {state}"
            + (f" ({avatar.reasons[v][:200]})" if v in avatar.reasons else "")
            + (f" ({_gates(avatar.creation[v])})" if v in avatar.creation else "")
            for v, state in sorted(avatar.versions.items())
        )
        if not avatar.ready and not avatar.reasons:  # not loaded: the server loads it when asked for it
            versions = "not resident: loads on its first request"
        print(f"{avatar.name}\t{versions}")
    return 0


def _gates(figures: dict) -> str:
    """A created version's quality gates, as `lipsync-server avatar create` measured them."""
    try:
        shown = f"created: PSNR {figures['psnr_db']:.1f} dB, lip sync r {figures['sync_r']:.2f}"
        if "real_sync_r" in figures:  # what the person's own mouth reaches on the same frames
            shown += f" (the video's own {figures['real_sync_r']:.2f})"
        failed = figures.get("failed") or []
    except (KeyError, TypeError, ValueError):
        return "created: figures unreadable"
    return shown + (f", gates failed: {len(failed)}, added anyway" if failed else ", gates passed")


def _load(client: LipsyncClient, args) -> int:
    client.load_avatar(args.name)
    print(f"loaded {args.name}")
    return 0


def _unload(client: LipsyncClient, args) -> int:
    client.unload_avatar(args.name)
    print(f"unloaded {args.name}")
    return 0


def _print_json(value) -> int:
    print(json.dumps(value, indent=2))
    return 0


COMMANDS = {
    "render": _render,
    "stream": _stream,
    "avatars": _avatars,
    "load": _load,
    "unload": _unload,
    "stats": lambda client, args: _print_json(client.statistics()),
    "health": lambda client, args: _print_json(client.health()),
}

if __name__ == "__main__":
    sys.exit(main())
