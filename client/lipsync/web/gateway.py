"""The web gateway: serves one page and relays between the browser and the lip-sync server.

    lipsync web                      # http://127.0.0.1:8080/, the server at 127.0.0.1:8001

It is a client of the server like any other: live audio goes into a lipsync.conversation
Conversation (the session a voice agent uses: audio at any pace, idle between speech, 25 frames
a second out, each with its audio), files through LipsyncClient.render_chunks(); the server's
JPEG frames come back over one WebSocket per page. No model runs here. It uses the administrator
key for one call only, the list of avatars (names and versions); nothing of the model-control
API reaches the browser.

aiohttp: one well-kept library (aio-libs) serves the page, its files and the WebSocket, with no
separate ASGI server; a live session runs on its event loop, a file render on a thread of its own.

WebSocket protocol. Browser to gateway: a text message {"type": "live", "avatar", "version"},
then binary messages of 16-bit little-endian mono PCM at 16 kHz (as fast or as slow as it comes:
a microphone, or a text-to-speech reply at once), {"type": "interrupt"} to drop what was sent
and not yet shown, and {"type": "stop"} to end once it is shown; or {"type": "file", "avatar",
"version"} followed by one binary message, the audio file. Gateway to browser: binary frames
(FRAME_HEADER: frame number, loop position, flags, JPEG length; then the JPEG, then in live mode
the frame's 40 ms of audio as 16-bit PCM), and text messages {"type": "done", "frames"} or
{"type": "error", "message"}.
"""

import asyncio
import json
import struct
import threading
from pathlib import Path

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web
from tritonclient.utils import InferenceServerException

from lipsync_protocol import avatar_names, framing

from .. import session_metrics
from ..client import Cancelled, LipsyncClient
from ..conversation import Conversation
from ..media_io import CONTAINER_NAMES, AudioTooLong, read_audio
from . import errors
from .guard import origins_for, same_site_only

STATIC = Path(__file__).parent / "static"
MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_VERSION = 2**31 - 1
MAX_CHUNK_SECONDS = 1.0
# Live speech taken in and not yet shown, at most (the memory a page can make the gateway hold).
MAX_AHEAD_S = 120.0
# A frame to the page: its number, its position in the avatar's loop, FLAG_*, the JPEG's length.
FRAME_HEADER = struct.Struct(">IIBI")
# SPEAKING: it shows the reply; HELD: the frame before, with silence (the loop waited); LATE:
# another picture than its own, on its own audio (lipsync.conversation: the voice does not wait).
FLAG_SPEAKING, FLAG_HELD, FLAG_LATE = 1, 2, 4


class BadMessage(ValueError):
    """What the browser sent is not what the protocol allows (said to the page, not raised on)."""


def start_message(text: str) -> tuple[str, str, int | None]:
    """(mode, avatar, version) from a session's first message."""
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        raise BadMessage(f"expected a JSON message, got {text[:64]!r}") from None
    if not isinstance(message, dict) or message.get("type") not in ("live", "file"):
        raise BadMessage('the first message must be {"type": "live" | "file", "avatar": ..., "version": ...}')
    avatar = message.get("avatar")
    if not isinstance(avatar, str):
        raise BadMessage("avatar: pick one (a name)")
    try:
        avatar_names.check_name(avatar)
    except avatar_names.AvatarNameError as error:
        raise BadMessage(f"avatar: {error}") from None
    version = message.get("version") or None
    if version is not None and (not isinstance(version, int) or not 0 <= version <= MAX_VERSION):
        raise BadMessage(f"version: a number >= 1, or 0 for the latest; got {str(version)[:32]!r}")
    return message["type"], avatar, version


def control(text: str) -> str:
    """ "stop" or "interrupt", from a message sent while a stream runs."""
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        message = None
    if message not in ({"type": "stop"}, {"type": "interrupt"}):
        raise BadMessage('a stream is running: send {"type": "stop"} or {"type": "interrupt"}')
    return message["type"]


def frame_message(number: int, position: int, flags: int, jpeg: bytes, pcm: bytes = b"") -> bytes:
    return FRAME_HEADER.pack(number, position, flags, len(jpeg)) + jpeg + pcm


def to_pcm16(audio: np.ndarray) -> bytes:
    """The inverse of pcm16(): what came in as 16-bit PCM goes out the same."""
    return np.clip(np.rint(audio * 32768.0), -32768, 32767).astype("<i2").tobytes()


def pcm16(data: bytes) -> np.ndarray:
    if len(data) % 2:
        raise BadMessage("live audio must be 16-bit PCM: an odd number of bytes arrived")
    if len(data) > 2 * framing.SAMPLE_RATE * MAX_CHUNK_SECONDS:
        raise BadMessage(f"a live audio chunk may hold at most {MAX_CHUNK_SECONDS:g} s")
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


class LiveSession:
    """The live stream of one page: a Conversation fed with the page's audio, its frames sent
    as they are played out, 25 a second, each with its audio."""

    def __init__(self, gateway: "Gateway", ws: web.WebSocketResponse, avatar: str, version: int | None):
        self.gateway, self.ws = gateway, ws
        admin_key, inference_key = gateway.keys
        self.talk = Conversation(
            gateway.server_url,
            avatar,
            version,
            protocol=gateway.protocol,
            admin_key=admin_key,
            inference_key=inference_key,
        )
        gateway.metrics.track(self.talk)
        self.ending = False
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.gateway.sessions.add(self)
        self.task = asyncio.get_running_loop().create_task(self._run())

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def push(self, data: bytes) -> None:
        """Speech from the page."""
        if self.ending:
            raise BadMessage("audio arrived after stop")
        samples = pcm16(data)
        if self.talk.ahead_s + len(samples) / framing.SAMPLE_RATE > MAX_AHEAD_S:
            raise BadMessage(f"more than {MAX_AHEAD_S:g} s of speech is waiting to be shown: send it as it plays")
        self.talk.say(samples, framing.SAMPLE_RATE)

    def control(self, what: str) -> None:
        if what == "interrupt":
            self.talk.interrupt()
        else:  # stop: once what was sent is shown
            self.ending = True
            self.talk.end_of_speech()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _run(self) -> None:
        count = 0
        try:
            await self.talk.start()
            async for frame in self.talk.frames():
                flags = FLAG_SPEAKING * frame.speaking | FLAG_HELD * frame.held | FLAG_LATE * frame.late
                await self.ws.send_bytes(frame_message(count, frame.position, flags, frame.jpeg, to_pcm16(frame.audio)))
                count += 1
                if self.ending and not self.talk.replies:
                    await self.ws.send_str(json.dumps({"type": "done", "frames": count}))
                    return
        except Exception as error:  # said to the page, whatever it is
            if not self.ws.closed:  # else nobody is there to tell
                message = errors.readable(error, self.gateway.server_url)
                await self.ws.send_str(json.dumps({"type": "error", "message": message}))
        finally:
            await self.talk.close()
            self.gateway.sessions.discard(self)


class FileSession:
    """The render of one uploaded file: a thread runs the client's blocking calls and hands
    frames to the event loop, which sends them in order. It has a client of its own, so that a
    page that goes away cancels its requests on the server (LipsyncClient.cancel())."""

    def __init__(self, gateway: "Gateway", ws: web.WebSocketResponse, loop: asyncio.AbstractEventLoop):
        self.gateway, self.ws, self.loop = gateway, ws, loop
        self.client = gateway.new_client()
        self.cancelled = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, upload: list[bytes], avatar: str, version: int | None) -> None:
        """Renders the file in `upload` (taken out of the list: the decoded audio is then the
        only copy the gateway holds)."""

        def frames():
            try:
                audio, rate = read_audio(upload.pop(), self.gateway.max_file_seconds)
            except AudioTooLong:
                raise BadMessage(
                    f"the file is longer than this gateway's limit of {self.gateway.max_file_seconds:g} s"
                ) from None
            except Exception as error:  # FFmpeg's many ways to say "not audio"
                raise BadMessage(f"could not read the file as audio ({CONTAINER_NAMES}): {str(error)[:120]}") from None
            # One chunk of a second a request: a page that goes away leaves little to finish.
            return self.client.render_chunks(audio, rate, avatar, version, chunk_seconds=1.0, max_in_flight=2)

        self._run(frames)

    def control(self, what: str) -> None:
        """A file renders to its end; "interrupt" cancels it."""
        if what == "interrupt":
            self.cancel()

    def cancel(self) -> None:
        self.cancelled.set()
        self.client.cancel()
        if self.thread is None:  # a file that never arrived: no relay to close the client
            self.client.close()

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def _run(self, frames) -> None:
        def relay():
            count = 0
            try:
                for jpeg in frames():
                    if self.cancelled.is_set():
                        return
                    self._send(self.ws.send_bytes(frame_message(count, count, 0, jpeg)))
                    count += 1
                self._send(self.ws.send_str(json.dumps({"type": "done", "frames": count})))
            except Cancelled:
                pass
            except Exception as error:  # said to the page, whatever it is
                if not self.ws.closed and not self.cancelled.is_set():  # else nobody is there to tell
                    self._send_error(errors.readable(error, self.gateway.server_url))
            finally:
                self.client.close()
                self.gateway.sessions.discard(self)

        self.gateway.sessions.add(self)
        self.thread = threading.Thread(target=relay, name="lipsync web file", daemon=True)
        self.thread.start()

    def _send(self, coroutine) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def _send_error(self, message: str) -> None:
        try:
            self._send(self.ws.send_str(json.dumps({"type": "error", "message": message})))
        except (ConnectionError, RuntimeError):
            pass


class Gateway:
    def __init__(
        self,
        server_url: str,
        protocol: str,
        keys: tuple[str | None, str | None],
        origins: set[str],
        max_sessions: int,
        max_file_seconds: float,
    ):
        self.server_url, self.protocol, self.keys = server_url, protocol, keys
        self.client = self.new_client()
        self.origins = origins
        self.max_sessions = max_sessions
        self.max_file_seconds = max_file_seconds
        self.sessions: set[LiveSession | FileSession] = set()
        self.sockets: set[web.WebSocketResponse] = set()
        self.metrics = session_metrics.for_server(server_url, keys[0])

    def app(self) -> web.Application:
        guard = same_site_only(self.origins, permissions="microphone=(self)")
        app = web.Application(middlewares=[guard], client_max_size=MAX_FILE_BYTES)
        app.router.add_get("/", self._index)
        app.router.add_get("/api/avatars", self._avatars)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/metrics", self.metrics.handle)
        app.router.add_static("/static/", STATIC)
        app.on_shutdown.append(self._shutdown)
        return app

    def new_client(self) -> LipsyncClient:
        return LipsyncClient(self.server_url, self.protocol, admin_key=self.keys[0], inference_key=self.keys[1])

    def busy(self) -> bool:
        """Whether the pages connected, with the sessions still finishing after their page went,
        are at --max-sessions: each may hold an upload and its decoded audio."""
        return len(self.sockets | {session.ws for session in self.sessions}) >= self.max_sessions

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _avatars(self, request: web.Request) -> web.Response:
        try:
            avatars = await asyncio.get_running_loop().run_in_executor(None, self.client.avatars)
        except (InferenceServerException, OSError) as error:
            return web.json_response({"error": errors.readable(error, self.server_url)}, status=502)
        return web.json_response([{"name": a.name, "versions": sorted(a.versions), "ready": a.ready} for a in avatars])

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self.busy():
            return web.Response(status=503, text=f"the gateway is serving its limit of {self.max_sessions} pages")
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_FILE_BYTES)
        await ws.prepare(request)
        self.sockets.add(ws)
        session: LiveSession | FileSession | None = None
        pending_file: tuple[str, int | None] | None = None
        loop = asyncio.get_running_loop()
        try:
            async for message in ws:
                try:
                    if message.type == WSMsgType.TEXT:
                        if session is not None and session.running:
                            session.control(control(message.data))
                            continue
                        mode, avatar, version = start_message(message.data)
                        if session is not None:
                            session.cancel()
                        if mode == "live":
                            session = LiveSession(self, ws, avatar, version)
                            session.start()
                        else:
                            session, pending_file = FileSession(self, ws, loop), (avatar, version)
                    elif message.type == WSMsgType.BINARY:
                        if pending_file is not None and isinstance(session, FileSession):
                            session.start([message.data], *pending_file)
                            pending_file = None
                        elif isinstance(session, LiveSession) and session.running:
                            session.push(message.data)
                        else:
                            raise BadMessage('audio arrived before {"type": "live"} or {"type": "file"}')
                except BadMessage as error:
                    if session is not None:
                        session.cancel()
                    await ws.send_str(json.dumps({"type": "error", "message": f"bad request: {error}"}))
        finally:
            self.sockets.discard(ws)
            if session is not None:
                session.cancel()  # the page closed: the stream ends, the gateway serves on
        return ws

    async def _shutdown(self, app: web.Application) -> None:
        """Stopping: streams end and pages are told, so that they reconnect to the next gateway."""
        for session in list(self.sessions):
            session.cancel()
        for ws in list(self.sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"gateway stopping")


def serve(
    server_url: str,
    protocol: str,
    keys: tuple[str | None, str | None],
    host: str,
    port: int,
    origins: list[str],
    max_sessions: int,
    max_file_seconds: float,
) -> int:
    gateway = Gateway(server_url, protocol, keys, origins_for(host, port, origins), max_sessions, max_file_seconds)
    print(f"lip-sync web page: http://{host}:{port}/ (server {server_url}; Ctrl-C stops)", flush=True)
    web.run_app(gateway.app(), host=host, port=port, print=None, handle_signals=True)
    return 0
