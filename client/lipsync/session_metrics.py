"""Prometheus metrics of the conversations one process holds (the web gateway's live pages, the
example agent's calls): what their listeners get, which the server's own metrics cannot see.
`lipsync web` and the agent serve them at GET /metrics, keyed with the server's administrator key
like its statistics (header lipsync-admin-key, or `Authorization: Bearer KEY`, what Prometheus's
`authorization` setting sends): a page on another site cannot reach the route (lipsync.web.guard)
and another local user cannot read it without the key.

    lipsync_sessions_open, lipsync_sessions_speaking          gauges, at scrape time
    lipsync_reply_slots_total{shown}                          rendered or substituted (late)
    lipsync_voice_stretch_seconds                             histogram, per reply
    lipsync_first_frame_seconds                               histogram, per reply
    lipsync_session_refusals_total                            segments refused as too late
"""

import hmac
import weakref

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from lipsync_protocol import framing
from lipsync_protocol.keys import ADMIN

from .conversation import RENDERED, SUBSTITUTED, Conversation, ReplyReport

ADMIN_HEADER = "lipsync-admin-key"


class SessionMetrics:
    def __init__(self, admin_key: str | None):
        """`admin_key`: what a scrape must send; None: the route answers 403 to every scrape."""
        self.admin_key = admin_key
        self.registry = CollectorRegistry()
        self.sessions: weakref.WeakSet[Conversation] = weakref.WeakSet()
        Gauge("lipsync_sessions_open", "Conversations open.", registry=self.registry).set_function(
            lambda: len(self._open())
        )
        Gauge("lipsync_sessions_speaking", "Conversations playing a reply.", registry=self.registry).set_function(
            lambda: sum(talk.speaking for talk in self._open())
        )
        self.slots = Counter(
            "lipsync_reply_slots", "Replies' slots, by what they showed.", ["shown"], registry=self.registry
        )
        for shown in (RENDERED, SUBSTITUTED):
            self.slots.labels(shown)  # both series from the start: rate() sees them
        self.stretch = Histogram(
            "lipsync_voice_stretch_seconds",
            "Silence put into a reply's voice (waiting for its own audio), per reply.",
            buckets=(0.0, 0.04, 0.08, 0.2, 0.5, 1.0, 2.0, 5.0),
            registry=self.registry,
        )
        self.first_frame = Histogram(
            "lipsync_first_frame_seconds",
            "From a reply's first audio to its first rendered picture shown.",
            buckets=(0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
            registry=self.registry,
        )
        self.refusals = Counter(
            "lipsync_session_refusals", "Segments the server refused as too late to be shown.", registry=self.registry
        )

    def _open(self) -> list[Conversation]:
        return [talk for talk in list(self.sessions) if not talk.closed]

    def track(self, talk: Conversation) -> None:
        """Counts `talk` while it is open, and each reply it shows."""
        self.sessions.add(talk)
        talk.on_reply = self.observe

    def observe(self, report: ReplyReport) -> None:
        self.slots.labels(RENDERED).inc(report.slots - report.late)
        self.slots.labels(SUBSTITUTED).inc(report.late)
        self.stretch.observe(report.held / framing.FPS)
        if report.first_frame_s is not None:
            self.first_frame.observe(report.first_frame_s)
        self.refusals.inc(report.refused)

    async def handle(self, request: web.Request) -> web.Response:
        """GET /metrics: the exposition, to a scrape that sends the administrator key."""
        given = request.headers.get(ADMIN_HEADER) or request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.admin_key is None:
            return web.Response(status=403, text="no administrator key is set: metrics are not served")
        if not hmac.compare_digest(given.encode(), self.admin_key.encode()):
            return web.Response(
                status=401, text=f"send the administrator key ({ADMIN_HEADER} or Authorization: Bearer)"
            )
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def for_server(server_url: str, admin_key: str | None) -> SessionMetrics:
    """Metrics keyed with the administrator key of the server at `server_url` (given, from the
    environment, or for a loopback server its key file: lipsync_protocol.keys)."""
    return SessionMetrics(ADMIN.for_client(server_url, admin_key))
