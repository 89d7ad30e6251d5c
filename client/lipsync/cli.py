"""`lipsync`: render speech to an MP4, manage avatars, check the server.

    lipsync render speech.wav --avatar demo -o out.mp4
    lipsync avatars | load NAME | unload NAME | stats | health
"""
import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm
from tritonclient.utils import InferenceServerException

from . import framing, media_io
from .client import LipsyncClient, chunk_plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lipsync", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=None, help="server address (default 127.0.0.1:8001 for gRPC, :8000 for HTTP)")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    commands = parser.add_subparsers(dest="command", required=True)

    render = commands.add_parser("render", help="render an audio file to an MP4 with sound")
    render.add_argument("audio", type=Path, help="WAV, FLAC, MP3 or a video file's audio, any sample rate")
    render.add_argument("--avatar", required=True)
    render.add_argument("--version", type=int, default=None, help="avatar weights version (default: latest)")
    render.add_argument("--start-frame", type=int, default=0)
    render.add_argument("--chunk-seconds", type=float, default=4.0, help="audio per request")
    render.add_argument("--in-flight", type=int, default=2, help="requests in flight at once")
    render.add_argument("-o", "--output", type=Path, required=True)

    commands.add_parser("avatars", help="list avatars, their versions and states")
    for verb in ("load", "unload"):
        sub = commands.add_parser(verb, help=f"{verb} an avatar on the server")
        sub.add_argument("name")
    commands.add_parser("stats", help="per-model request counts and latencies")
    commands.add_parser("health", help="server liveness, readiness and avatars")

    args = parser.parse_args(argv)
    url = args.url or ("127.0.0.1:8001" if args.protocol == "grpc" else "127.0.0.1:8000")
    try:
        with LipsyncClient(url, args.protocol) as client:
            return COMMANDS[args.command](client, args)
    except InferenceServerException as error:
        print(f"lipsync: server error: {error.message()}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"lipsync: {error}", file=sys.stderr)
        return 1


def _render(client: LipsyncClient, args) -> int:
    audio, rate = media_io.read_audio(args.audio)
    plan = chunk_plan(len(audio), rate, args.chunk_seconds, args.start_frame)
    expected = sum(framing.frame_count(framing.resampled_length(end - begin, rate)) for begin, end, _ in plan)
    frames = client.render_chunks(audio, rate, args.avatar, args.version, args.start_frame, args.chunk_seconds, args.in_flight)
    with tqdm(total=expected, unit="frame", desc=f"rendering {args.avatar}") as progress:
        def counted():
            for jpeg in frames:
                progress.update(1)
                yield jpeg

        written = media_io.write_mp4(args.output, counted(), audio, rate)
    print(f"wrote {args.output}: {written} frames, {len(audio) / rate:.2f} s of audio")
    return 0


def _avatars(client: LipsyncClient, args) -> int:
    for avatar in client.avatars():
        versions = ", ".join(f"{v}: {state}" for v, state in sorted(avatar.versions.items())) or "not loaded"
        print(f"{avatar.name}\t{versions}")
    return 0


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
    "avatars": _avatars,
    "load": _load,
    "unload": _unload,
    "stats": lambda client, args: _print_json(client.statistics()),
    "health": lambda client, args: _print_json(client.health()),
}

if __name__ == "__main__":
    sys.exit(main())
