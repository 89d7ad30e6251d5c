"""`lipsync agent`: an example voice agent with the avatar as its face, offline, over WebRTC.

    lipsync agent --avatar demo        # http://127.0.0.1:8090/, the server at 127.0.0.1:8001

The page opens a peer connection to this process (Pipecat's small WebRTC transport: aiortc, peer
to peer, no media server) and sends the microphone; each connection runs its own pipeline:

    transport.input() -> VAD (Silero) -> Responder -> espeak-ng TTS -> LipsyncAvatarService -> transport.output()

The responder stands in for speech recognition and a language model (see responder.py); the
page's text box makes the avatar speak, and speaking over it interrupts it. aiohttp serves the
page and the offer (one POST: the browser's SDP offer in, the answer out) behind the same
same-site guard as the web page.
"""

import asyncio
from pathlib import Path

from aiohttp import web
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.workers.runner import WorkerRunner

from lipsync_protocol import framing

from .. import session_metrics
from ..pipecat_service import LipsyncAvatarService
from ..web.guard import origins_for, same_site_only
from .espeak import EspeakTTSService
from .responder import Responder
from .transport import AgentTransport

STATIC = Path(__file__).parent / "static"
MAX_OFFER_BYTES = 64 * 1024
# A conversation's pipeline (and its idle frames' rendering) starts only once its peer has
# connected; an offer that does not connect within this is dropped and frees its place.
CONNECT_TIMEOUT_S = 30.0
# The size the avatar is sent at: half the demo's 1280x720, which its JPEGs decode to directly
# (no resampling) and VP8 encodes in a few ms; aiortc's VP8 stays under 1.5 Mbit/s at any size
# (perf/agent.py measures the sizes side by side).
VIDEO_SIZE = (640, 360)


class Agent:
    def __init__(
        self,
        server_url: str,
        avatar: str,
        version: int | None = None,
        keys: tuple[str | None, str | None] = (None, None),
        origins: set[str] | None = None,
        max_sessions: int = 4,
        video_size: tuple[int, int] = VIDEO_SIZE,
        echo: bool = False,
        observers=(),
    ):
        """`observers`: Pipecat observers attached to every session's pipeline (measurements)."""
        self.server_url, self.avatar, self.version = server_url, avatar, version
        self.keys, self.origins = keys, origins or origins_for("127.0.0.1", 8090, [])
        self.max_sessions, self.video_size, self.echo = max_sessions, video_size, echo
        self.observers = list(observers)
        self.sessions: set[asyncio.Task] = set()
        self.workers: list[PipelineWorker] = []  # the sessions' pipelines, newest last
        self.metrics = session_metrics.for_server(server_url, keys[0])

    def app(self) -> web.Application:
        guard = same_site_only(self.origins, permissions="microphone=(self)")
        app = web.Application(middlewares=[guard], client_max_size=MAX_OFFER_BYTES)
        app.router.add_get("/", self._index)
        app.router.add_post("/api/offer", self._offer)
        app.router.add_get("/metrics", self.metrics.handle)
        app.router.add_static("/static/", STATIC)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "agent.html")

    async def _offer(self, request: web.Request) -> web.Response:
        # JSON only: a cross-site form cannot send it without a CORS preflight, which fails here.
        if request.content_type != "application/json":
            return web.Response(status=415, text="send the offer as application/json")
        if len(self.sessions) >= self.max_sessions:
            return web.Response(status=503, text=f"the agent is holding its limit of {self.max_sessions} conversations")
        try:
            offer = await request.json()
        except ValueError:
            return web.Response(status=400, text="the offer is not JSON")
        if not (isinstance(offer, dict) and offer.get("type") == "offer" and isinstance(offer.get("sdp"), str)):
            return web.Response(status=400, text='expected {"type": "offer", "sdp": "..."}')
        connection = SmallWebRTCConnection()  # no ICE servers: host candidates, peer to peer
        try:
            await connection.initialize(sdp=offer["sdp"], type="offer")
        except ValueError as error:
            await connection.disconnect()
            return web.Response(status=400, text=f"bad offer: {str(error)[:120]}")
        kinds = [transceiver.kind for transceiver in connection.pc.getTransceivers()]
        if kinds[:2] != ["audio", "video"]:
            await connection.disconnect()
            return web.Response(status=400, text="the offer must carry an audio, then a video transceiver")
        session = asyncio.create_task(self._converse(connection))
        self.sessions.add(session)
        session.add_done_callback(self.sessions.discard)
        return web.json_response(connection.get_answer())

    def pipeline(self, connection: SmallWebRTCConnection) -> PipelineWorker:
        width, height = self.video_size
        transport = AgentTransport(
            connection,
            TransportParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                # One frame's audio a chunk, so that each picture comes between two chunks.
                audio_out_10ms_chunks=framing.SAMPLES_PER_FRAME * 100 // framing.SAMPLE_RATE,
                video_out_enabled=True,
                video_out_is_live=True,
                video_out_width=width,
                video_out_height=height,
                video_out_framerate=framing.FPS,
            ),
        )
        avatar = LipsyncAvatarService(
            self.server_url,
            self.avatar,
            self.version,
            video_size=self.video_size,
            sync_with_audio=True,
            admin_key=self.keys[0],
            inference_key=self.keys[1],
        )
        self.metrics.track(avatar.talk)
        stages = [
            transport.input(),
            VADProcessor(vad_analyzer=SileroVADAnalyzer()),
            Responder(echo=self.echo),
            EspeakTTSService(),
            avatar,
            transport.output(),
        ]
        worker = PipelineWorker(
            Pipeline(stages),
            params=PipelineParams(audio_in_sample_rate=framing.SAMPLE_RATE, audio_out_sample_rate=framing.SAMPLE_RATE),
            observers=self.observers,
            cancel_on_idle_timeout=False,  # a conversation may listen for a long time
            enable_rtvi=False,  # the page speaks its own messages ({"type": "say"}), not RTVI's
        )

        @transport.event_handler("on_client_disconnected")
        async def on_disconnected(transport, client):
            await worker.cancel()

        return worker

    async def _converse(self, connection: SmallWebRTCConnection) -> None:
        if not await connected(connection, CONNECT_TIMEOUT_S):
            await connection.disconnect()
            return
        worker = self.pipeline(connection)
        self.workers.append(worker)
        try:
            runner = WorkerRunner(handle_sigint=False)
            await runner.add_workers(worker)
            await runner.run()
        except Exception:
            logger.exception("the conversation failed")
        finally:
            self.workers.remove(worker)
            await connection.disconnect()

    async def _shutdown(self, app: web.Application) -> None:
        for worker in list(self.workers):
            await worker.cancel()
        await asyncio.gather(*self.sessions, return_exceptions=True)


async def connected(connection: SmallWebRTCConnection, timeout_s: float) -> bool:
    """Whether the peer connection reaches "connected" within `timeout_s` (polled: aiortc has no
    awaitable for its state)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while connection.pc.connectionState != "connected":
        if connection.pc.connectionState in ("failed", "closed") or asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def serve(agent: Agent, host: str, port: int) -> int:
    print(f"lip-sync agent: http://{host}:{port}/ (server {agent.server_url}; Ctrl-C stops)", flush=True)
    web.run_app(agent.app(), host=host, port=port, print=None, handle_signals=True)
    return 0
