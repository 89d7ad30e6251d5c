"""`make bench-web`: speech-to-picture latency of the web page's live mode, in a real browser.

Starts the server (CPU profile, loopback) and the gateway (`lipsync web`), opens the page in
Debian's Chromium (headless, Playwright) with a fake microphone playing held-out speech, and
streams it live to the trained demo avatar. The page records, per frame, its arrival after its
speech was captured; the server's statistics give the time each segment spent in the server.
Reports the median and p95 and what they are made of: the look-ahead a frame needs, the wait
for the 200 ms chunk that completes it, the server's time, and the rest (transport, gateway,
browser). Writes out/bench-web/report.md, report.json and page.png. tests/test_web.py uses
the same gateway and browser helpers.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
import urllib.request
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import measure
import numpy as np
from playwright.sync_api import Page, sync_playwright

from lipsync import framing, streaming
from lipsync.client import ENSEMBLE, LipsyncClient
from lipsync_server.demo import synthetic, training
from lipsync_server.launcher.tritonserver import TritonServer, free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHUNK_S = 0.2  # the page's chunk
# Headless and offline (no background connections to Google's hosts); the microphone allowed
# without a prompt and faked; sound may start without a gesture.
BROWSER_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
FAKE_MICROPHONE = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


class Gateway:
    """`lipsync web` in a process of its own, in front of the server at `grpc_url`."""

    def __init__(self, grpc_url: str, log: Path):
        self.grpc_url, self.log, self.port = grpc_url, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Gateway":
        lipsync = str(Path(sys.executable).parent / "lipsync")
        command = [lipsync, "--url", self.grpc_url, "web", "--port", str(self.port)]
        self.process = subprocess.Popen(command, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url, timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"the gateway did not answer at {self.url}: see {self.log}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@contextmanager
def browser(microphone: Path | None = None, fake_microphone: bool = True, loop: bool = False) -> Iterator[Page]:
    """A page in headless Chromium; `microphone`: a WAV file the fake microphone plays once (or
    over and over: `loop`)."""
    flags = BROWSER_FLAGS + (FAKE_MICROPHONE if fake_microphone else [])
    if microphone:
        flags.append(f"--use-file-for-fake-audio-capture={microphone}{'' if loop else '%noloop'}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        try:
            yield chromium.new_page(viewport={"width": 1100, "height": 900})
        finally:
            chromium.close()


def write_wav(path: Path, audio: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(framing.SAMPLE_RATE)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def wait_until(page: Page, expression: str, timeout_s: float = 30.0) -> None:
    """Polls a JavaScript expression until it is true. (Playwright's wait_for_function evaluates
    its predicate in the page, which the page's Content Security Policy rightly forbids.)"""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout_s:.0f} s: {expression}")
        time.sleep(0.05)


def open_page(page: Page, gateway: Gateway, query: str) -> None:
    page.goto(f"{gateway.url}?{query}")
    wait_until(page, "window.lipsync && window.lipsync.connection === 'open'")
    wait_until(page, "document.querySelector('#avatar').options.length > 0")


def talk(page: Page, samples: int, on_tick=None, timeout_s: float = 60.0) -> dict:
    """Live mode until the fake microphone has sent `samples`, then stop and wait until every
    frame has arrived and its moment has passed; the page's measurements. `on_tick(page)` runs
    every 50 ms meanwhile."""
    page.click("#live")
    deadline = time.monotonic() + samples / framing.SAMPLE_RATE + timeout_s

    def ticking_until(expression: str) -> None:
        # on_tick runs through every wait: frames are shown, on the page's clock, whatever this waits for.
        while not page.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout_s:.0f} s: {expression}")
            if on_tick:
                on_tick(page)
            time.sleep(0.05)

    ticking_until(f"window.lipsync.samplesSent >= {samples}")
    page.click("#stop")
    ticking_until("['done', 'failed'].includes(window.lipsync.status)")
    ticking_until("window.lipsync.drawnIndex + window.lipsync.framesLate >= window.lipsync.framesReceived - 1")
    return page.evaluate("window.lipsync")


def screenshot_while_speaking(page: Page, path: Path, frame: int = 46) -> None:
    """The page as it shows frame `frame` (1.8 s into the held-out speech), once."""
    if not path.exists() and page.evaluate("window.lipsync.drawnIndex") >= frame:
        page.screenshot(path=str(path))


def server_ms_per_request(before: dict, after: dict) -> float:
    """Average time a request spent in the ensemble (queues and compute) between two
    statistics snapshots."""
    key = next(k for k in after if k.startswith(f"{ENSEMBLE}/"))
    requests = after[key]["requests"] - before.get(key, {}).get("requests", 0)
    total = (after[key]["avg_queue_ms"] + after[key]["avg_compute_ms"]) * after[key]["requests"]
    total -= (before.get(key, {}).get("avg_queue_ms", 0) + before.get(key, {}).get("avg_compute_ms", 0)) * (
        before.get(key, {}).get("requests", 0)
    )
    return total / max(requests, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay", type=float, default=3.0, help="the page's delay from speech to picture")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "bench-web")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "page.png").unlink(missing_ok=True)
    audio = training.held_out_speech()
    speech = write_wav(args.output / "speech.wav", audio)
    with TritonServer.on_free_ports(ROOT / "model_repository", log=args.output / "server.log") as server:
        url = f"127.0.0.1:{server.grpc_port}"
        client = LipsyncClient(url)
        client.render(audio[: framing.SAMPLE_RATE], framing.SAMPLE_RATE, "demo", synthetic.TRAINED_VERSION)  # warm
        gateway = Gateway(url, args.output / "gateway.log").start()
        try:
            before = client.statistics()
            with browser(speech) as page:
                open_page(page, gateway, f"avatar=demo&version={synthetic.TRAINED_VERSION}&delay={args.delay}")
                state = talk(page, len(audio), lambda page: screenshot_while_speaking(page, args.output / "page.png"))
            after = client.statistics()
        finally:
            gateway.stop()
    latencies = np.array(state["arrivalLatencyMs"])
    server_ms = server_ms_per_request(before, after)
    median, p95 = float(np.median(latencies)), float(np.percentile(latencies, 95))
    parts = {
        "look_ahead_ms": streaming.LOOKAHEAD_SECONDS * 1000,
        "chunk_wait_ms_mean": CHUNK_S * 1000 / 2,
        "server_ms_per_segment": server_ms,
    }
    parts["transport_gateway_browser_ms"] = median - sum(parts.values())
    report = {
        "cpu": measure.cpu(),
        "frames": state["framesReceived"],
        "frames_shown": state["framesDrawn"],
        "frames_late": state["framesLate"],
        "delay_s": args.delay,
        "speech_to_picture_ms": {"median": median, "p95": p95, "max": float(latencies.max())},
        "median_made_of": parts,
        "sync_offset_ms_max": float(np.abs(state["syncOffsetsMs"]).max()) if state["syncOffsetsMs"] else None,
        "errors": state["errors"],
    }
    (args.output / "report.json").write_text(json.dumps(report, indent=2))
    cpu = report["cpu"]
    lines = [
        f"# Web page, live mode, {time.strftime('%Y-%m-%d')}",
        "",
        f"{cpu['model']}, {cpu['cores']} cores ({', '.join(cpu['isa'])}); trained demo avatar; held-out "
        f"speech ({len(audio) / framing.SAMPLE_RATE:.1f} s) from Chromium's fake microphone; 200 ms chunks; "
        f"delay {args.delay} s.",
        "",
        "| | |",
        "| --- | --- |",
        f"| speech to picture (frame arrival after its speech), median / p95 / max | "
        f"{median:.0f} / {p95:.0f} / {latencies.max():.0f} ms |",
        f"| of the median: look-ahead a frame needs | {parts['look_ahead_ms']:.0f} ms |",
        f"| of the median: wait for the chunk that completes it (mean) | {parts['chunk_wait_ms_mean']:.0f} ms |",
        f"| of the median: in the server, per segment (Triton's statistics) | {server_ms:.0f} ms |",
        f"| of the median: the rest (transport, gateway, browser) | {parts['transport_gateway_browser_ms']:.0f} ms |",
        f"| frames received / shown / late | {state['framesReceived']} / {state['framesDrawn']} / "
        f"{state['framesLate']} |",
        f"| largest offset between a shown frame and its audio | {report['sync_offset_ms_max']:.1f} ms |",
    ]
    (args.output / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if state["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
