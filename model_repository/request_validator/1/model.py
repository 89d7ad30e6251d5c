"""Validates lip-sync requests (rules: lipsync_server/backend/request_rules.py)."""

import time
from pathlib import Path

import numpy as np

from lipsync_protocol import framing
from lipsync_server.audio import anti_aliasing, encoder_inputs
from lipsync_server.avatars.media import AvatarStore
from lipsync_server.backend import admission, metrics, request_rules, stub, ticket
from lipsync_server.backend.request_rules import InvalidInput


class TritonPythonModel:
    def initialize(self, args):
        config = stub.model_config(args)
        self.secret = ticket.secret()
        self.max_seconds = float(stub.parameter(config, "max_audio_seconds"))
        self.segment_max_wait_ms = int(stub.parameter(config, "segment_max_wait_ms"))
        self.clip_max_wait_ms = int(stub.parameter(config, "clip_max_wait_ms"))
        self.avatars = AvatarStore(Path(args["model_repository"]).parent)
        self.board = admission.Board(writer=False)
        self.metrics = metrics.Metrics(args["model_name"])
        self.metrics.refusals()

    def execute(self, requests):
        return stub.each(requests, self._check)

    def finalize(self):
        self.board.close()

    def _check(self, request):
        arrived = time.monotonic_ns()
        audio = stub.get(request, "AUDIO")
        rate = int(stub.get(request, "SAMPLE_RATE")[0])
        version, offset = _optional(request, "AVATAR_VERSION"), _optional(request, "AUDIO_OFFSET") or 0
        name, start = stub.text(request, "AVATAR"), int(stub.get(request, "START_FRAME")[0])
        try:
            request_rules.check_sample_rate(rate)
            request_rules.check_audio(audio, rate, self.max_seconds)
            request_rules.check_avatar(name, self.avatars.exists)
            request_rules.check_start_frame(start)
            if version is not None:
                request_rules.check_version(version)
            request_rules.check_audio_offset(offset, rate)
            mel_frames = framing.mel_frame_count(framing.resampled_length(audio.size, rate))
            starts = encoder_inputs.window_starts(mel_frames, offset // framing.HOP)
            frames = starts.shape[1] + 2  # one per encoder window, and the first and last again
            given_first, given_count = _optional(request, "FIRST_FRAME"), _optional(request, "FRAME_COUNT")
            first, count = request_rules.frame_range(given_first, given_count, frames)
            given_wait_ms = _optional(request, "MAX_WAIT_MS")
            request_rules.check_max_wait_ms(given_wait_ms)
            loop = self.avatars.loop_record(name)
            width, height = request_rules.frame_size(stub.get(request, "FRAME_SIZE"), loop.frame_size)
        except InvalidInput as error:
            self.metrics.refused(metrics.BAD_INPUT)
            return stub.invalid_arg(str(error))
        ahead, frames_per_s = self.board.read()
        segment = given_first is not None or given_count is not None
        queueing_ms = self.segment_max_wait_ms if segment else self.clip_max_wait_ms
        max_wait_ms = admission.bound_ms(given_wait_ms, queueing_ms, count, frames_per_s)
        refusal = admission.too_late(ahead, count, frames_per_s, max_wait_ms / 1000) if ahead else None
        if refusal:
            self.metrics.refused(metrics.BUSY)
            return stub.unavailable(refusal)
        deadline = arrived + max_wait_ms * 1_000_000
        checked = ticket.Ticket(name, version or 0, start, first, count, deadline, arrived, width, height)
        return stub.respond(
            CHECKED_AUDIO=anti_aliasing.band_limit(audio, rate),
            CHECKED_SAMPLE_RATE=stub.get(request, "SAMPLE_RATE"),
            WINDOW_STARTS=starts[0],
            LOOP_FRAMES=np.array([loop.frames], np.int64),
            TICKET=np.array([checked.seal(self.secret)], dtype=np.object_),
        )


def _optional(request, name: str) -> int | None:
    value = stub.get(request, name)
    return None if value is None else int(value[0])
