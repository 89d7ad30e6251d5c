"""`make bench-web`: speech-to-picture latency of the web page's live mode, in a real browser.

Starts the server (CPU profile, loopback) and the gateway (`lipsync web`), opens the page in
Debian's Chromium (headless, Playwright) with a fake microphone playing held-out speech, and
streams it live to the trained demo avatar. The gateway plays it out through a Conversation (25
frames a second, each with its audio; the voice is the clock: a frame not rendered in time shows
another picture of the reply on its own audio, and a reply waits, the picture before held with
silence, only for speech not yet come). Reports the time from the first speech captured to its
first frame shown, the frames shown, held, late from the server and missed on the page, and the
offset between a shown frame and its audio. Writes
out/bench-web/report.md, report.json and page.png. tests/test_web.py uses the same gateway and
browser helpers.
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

from lipsync.client import LipsyncClient
from lipsync.web.gateway import FLAG_HELD
from lipsync_protocol import framing, waiting
from lipsync_server.demo import synthetic, training
from lipsync_server.launcher.tritonserver import TritonServer, free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
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
        waiting.until(self._answers, 30, f"the gateway answering at {self.url} (see {self.log})", interval_s=0.2)
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=1):
                return True
        except OSError:
            return False

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
    waiting.until(lambda: page.evaluate(expression), timeout_s, expression, interval_s=0.05)


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


def held_frames(state: dict) -> int:
    return sum(1 for info in state["frameInfo"] if info and info[1] & FLAG_HELD)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--buffer", type=float, default=0.3, help="the page's buffer for the network's jitter, s")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "bench-web")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "page.png").unlink(missing_ok=True)
    audio = training.held_out_speech()
    speech = write_wav(args.output / "speech.wav", audio)
    with TritonServer.on_free_ports(ROOT / "model_repository", log=args.output / "server.log") as server:
        url = f"127.0.0.1:{server.grpc_port}"
        LipsyncClient(url).render(audio[: framing.SAMPLE_RATE], framing.SAMPLE_RATE, "demo", synthetic.TRAINED_VERSION)
        gateway = Gateway(url, args.output / "gateway.log").start()
        try:
            with browser(speech) as page:
                open_page(page, gateway, f"avatar=demo&version={synthetic.TRAINED_VERSION}&buffer={args.buffer}")
                state = talk(page, len(audio), lambda page: screenshot_while_speaking(page, args.output / "page.png"))
        finally:
            gateway.stop()
    offsets = np.abs(state["syncOffsetsMs"]) if state["syncOffsetsMs"] else np.zeros(1)
    report = {
        "cpu": measure.cpu(),
        "buffer_s": args.buffer,
        "speech_to_picture_ms": state["speechToPictureMs"],
        "frames": state["framesReceived"],
        "frames_speaking": state["speakingFrames"],
        "frames_held": held_frames(state),
        "frames_late_from_server": state["lateFrames"],
        "frames_shown": state["framesDrawn"],
        "frames_late": state["framesLate"],
        "sync_offset_ms_max": float(offsets.max()),
        "errors": state["errors"],
    }
    (args.output / "report.json").write_text(json.dumps(report, indent=2))
    cpu = report["cpu"]
    picture = report["speech_to_picture_ms"]
    lines = [
        f"# Web page, live mode, {time.strftime('%Y-%m-%d')}",
        "",
        f"{cpu['model']}, {cpu['cores']} cores ({', '.join(cpu['isa'])}); trained demo avatar; held-out "
        f"speech ({len(audio) / framing.SAMPLE_RATE:.1f} s) from Chromium's fake microphone; 200 ms chunks; "
        f"page buffer {args.buffer} s.",
        "",
        "| | |",
        "| --- | --- |",
        f"| speech to picture (first speech captured to its frame shown) | "
        f"{'-' if picture is None else f'{picture:.0f} ms'} |",
        f"| frames received / showing speech / of those late from the server (another picture, their own "
        f"audio) / held (the reply waiting for speech) | {report['frames']} / {report['frames_speaking']} / "
        f"{report['frames_late_from_server']} / {report['frames_held']} |",
        f"| frames shown / missed on the page | {report['frames_shown']} / {report['frames_late']} |",
        f"| largest offset between a shown frame and its audio | {report['sync_offset_ms_max']:.1f} ms |",
    ]
    (args.output / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if state["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
