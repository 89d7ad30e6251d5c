"""`make bench-catalog`: many avatars on one server, written to out/bench-catalog/report.json
and report.md. Every avatar is a reference-size one: the demo's version 1 and media, linked
under other names (as many avatars of one network width are, weights apart).

    1. start time: a repository of 1 avatar against one of 200
    2. memory per resident avatar version: tritonserver and its processes (RSS, and PSS, which
       counts shared libraries once) before and after 20 avatars loaded and rendered once each
    3. cold start: from the first request for an avatar that is not resident to its frames
    4. throughput with 1 avatar against 20 requested round robin (all resident); and the
       avatar run as before this change (whole batches), in the same run
    5. eviction under load: round robin over 20 avatars with 5 resident, requests failed

The report names the CPU; figures are compared within one run.
"""

import argparse
import json
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import measure
import numpy as np

from lipsync.client import LipsyncClient
from lipsync_protocol import framing
from lipsync_server.calibration import voice
from lipsync_server.demo.catalog import link_avatar
from lipsync_server.launcher import processes
from lipsync_server.launcher.tritonserver import TritonServer
from lipsync_server.model_configs import set_parameters

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "model_repository"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "bench-catalog")
    parser.add_argument("--avatars", type=int, default=20)
    parser.add_argument("--requests", type=int, default=8, help="requests per throughput run")
    args = parser.parse_args()
    work = args.output / "catalog-repositories"  # made and removed by this benchmark
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for log in ("server.log", "evicting-server.log"):  # this run's logs only
        (args.output / log).unlink(missing_ok=True)
    speech = voice.speech(seconds=4.0)
    names = [f"r{i:03d}" for i in range(args.avatars)]
    results: dict = {"cpu": measure.cpu(), "avatars": args.avatars}

    one = catalog(work / "one", [], resident=4)
    many = catalog(work / "many", [f"s{i:03d}" for i in range(200)], resident=4)
    results["start_s"] = {"1 avatar": start_time(one), "200 avatars": start_time(many)}

    repository = catalog(work / "main", [*names, "whole"], resident=args.avatars + 2, load_wait_s=60)
    set_parameters(repository / "avatar_whole" / "configs" / "cpu.pbtxt", frames_per_run="0")
    with TritonServer.on_free_ports(repository, log=args.output / "server.log") as server:
        client = LipsyncClient(f"127.0.0.1:{server.grpc_port}")
        client.wait_until_ready()
        before = memory_mb(server)
        cold = []
        for name in names:
            started = time.perf_counter()
            client.render(speech[: framing.SAMPLE_RATE // 5], framing.SAMPLE_RATE, name)
            cold.append(time.perf_counter() - started)
        after = memory_mb(server)
        results["memory_mb"] = {"before": before, "after": after}
        results["per_resident_avatar_mb"] = {k: (after[k] - before[k]) / len(names) for k in before}
        results["cold_first_frames_s"] = {"median": statistics.median(cold), "max": max(cold), "all": cold}
        client.render(speech, framing.SAMPLE_RATE, "whole")
        runs: dict[str, list[float]] = {"1 avatar": [], f"{len(names)} avatars round robin": [], "whole batches": []}
        for _ in range(2):  # in turns, so that the machine's drift falls on each alike
            runs["1 avatar"].append(throughput(client, speech, [names[0]], args.requests))
            runs[f"{len(names)} avatars round robin"].append(throughput(client, speech, names, args.requests))
            runs["whole batches"].append(throughput(client, speech, ["whole"], args.requests))
        results["throughput_fps"] = {k: statistics.mean(v) for k, v in runs.items()}
        results["throughput_runs"] = runs

    small = catalog(work / "evicting", names, resident=5, load_wait_s=4)
    evicting_log = args.output / "evicting-server.log"
    with TritonServer.on_free_ports(small, log=evicting_log) as server:
        client = LipsyncClient(f"127.0.0.1:{server.grpc_port}")
        client.wait_until_ready()
        started = time.perf_counter()
        outcomes = round_robin(client, speech[: framing.SAMPLE_RATE], names * 2, concurrency=3)
        results["eviction"] = {
            "requests": len(outcomes),
            "failed": sum(1 for o in outcomes if o),
            "errors": sorted({o for o in outcomes if o})[:5],
            "seconds": time.perf_counter() - started,
            "unloads": evicting_log.read_text(errors="replace").count("(least recently used)"),
        }
    shutil.rmtree(work)
    write(results, args.output)
    return 0 if results["eviction"]["failed"] == 0 else 1


def catalog(folder: Path, names: list[str], resident: int, load_wait_s: float = 4) -> Path:
    """A copy of the repository plus `names`: the demo's version 1 and media, hard-linked."""
    repository = folder / "model_repository"
    shutil.copytree(REPOSITORY, repository, ignore=shutil.ignore_patterns("__pycache__"))
    for name in names:
        link_avatar(repository, "demo", name, versions=[1])
    generator = repository / "face_generator" / "config.pbtxt"
    set_parameters(generator, max_resident_avatars=str(resident), load_wait_s=str(load_wait_s))
    return repository


def start_time(repository: Path) -> float:
    started = time.perf_counter()
    with TritonServer.on_free_ports(repository, log=repository.parent / "server.log"):
        return time.perf_counter() - started


def memory_mb(server: TritonServer) -> dict[str, float]:
    pid = server.running.pid
    return {"rss": processes.tree_memory_mb(pid), "pss": processes.tree_memory_mb(pid, proportional=True)}


def throughput(client: LipsyncClient, speech: np.ndarray, names: list[str], requests: int) -> float:
    """Frames a second, two requests in flight, avatars taken in turn."""
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        frames = sum(
            pool.map(
                lambda i: len(client.render(speech, framing.SAMPLE_RATE, names[i % len(names)])),
                range(requests),
            )
        )
    return frames / (time.perf_counter() - started)


def round_robin(client: LipsyncClient, audio: np.ndarray, names: list[str], concurrency: int) -> list[str]:
    """The error of each request ('' when it rendered)."""

    def one(name: str) -> str:
        try:
            client.render(audio, framing.SAMPLE_RATE, name)
            return ""
        except Exception as error:
            return str(error)[:200]

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, names))


def write(results: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(results, indent=2))
    cpu, start, per = results["cpu"], results["start_s"], results["per_resident_avatar_mb"]
    cold, fps, ev = results["cold_first_frames_s"], results["throughput_fps"], results["eviction"]
    one, many = list(fps.values())[:2]
    lines = [
        f"# Many avatars on one server ({time.strftime('%Y-%m-%d')})",
        "",
        f"CPU: {cpu['model']}, {cpu['cores']} cores, {', '.join(cpu['isa'])} (native bf16: {cpu['native_bf16']}). "
        "Reference-size avatars.",
        "",
        "| | |",
        "| --- | --- |",
        f"| server start, 1 avatar / 200 avatars | {start['1 avatar']:.1f} s / {start['200 avatars']:.1f} s |",
        f"| memory per resident avatar version, RSS / PSS | {per['rss']:.0f} / {per['pss']:.0f} MB |",
        f"| server memory before / after {results['avatars']} avatars, PSS | "
        f"{results['memory_mb']['before']['pss']:.0f} / {results['memory_mb']['after']['pss']:.0f} MB |",
        f"| cold avatar, request to frames (5 frames), median / max | {cold['median']:.1f} / {cold['max']:.1f} s |",
        *(f"| throughput, {k} | {v:.2f} frames/s |" for k, v in fps.items()),
        f"| {results['avatars']} avatars round robin against 1 | {many / one:.2f} |",
        f"| 1 avatar one frame a run against whole batches | {one / fps['whole batches']:.2f} |",
        f"| round robin over {results['avatars']} avatars, 5 resident: requests failed | "
        f"{ev['failed']} of {ev['requests']} ({ev['unloads']} unloads, {ev['seconds']:.0f} s) |",
    ]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
