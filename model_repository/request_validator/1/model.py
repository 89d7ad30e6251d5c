"""Validates lip-sync requests (rules: lipsync/serving/request_rules.py)."""

from pathlib import Path

import numpy as np

from lipsync import framing
from lipsync_server.audio import anti_aliasing
from lipsync_server.avatars.media import AvatarStore
from lipsync_server.backend import request_rules, stub
from lipsync_server.backend.request_rules import InvalidInput


class TritonPythonModel:
    def initialize(self, args):
        config = stub.model_config(args)
        self.max_seconds = float(stub.parameter(config, "max_audio_seconds", "60"))
        self.avatars = AvatarStore(Path(args["model_repository"]).parent)

    def execute(self, requests):
        return [self._check(request) for request in requests]

    def _check(self, request):
        audio = stub.get(request, "AUDIO")
        rate = int(stub.get(request, "SAMPLE_RATE")[0])
        version, offset = _optional(request, "AVATAR_VERSION"), _optional(request, "AUDIO_OFFSET") or 0
        try:
            request_rules.check_sample_rate(rate)
            request_rules.check_audio(audio, rate, self.max_seconds)
            request_rules.check_avatar(stub.text(request, "AVATAR"), self.avatars.exists)
            request_rules.check_start_frame(int(stub.get(request, "START_FRAME")[0]))
            if version is not None:
                request_rules.check_version(version)
            request_rules.check_audio_offset(offset, rate)
            frames = framing.frame_count(framing.resampled_length(audio.size, rate), offset // framing.HOP)
            first, count = request_rules.frame_range(
                _optional(request, "FIRST_FRAME"), _optional(request, "FRAME_COUNT"), frames
            )
        except InvalidInput as error:
            return stub.invalid_arg(str(error))
        return stub.respond(
            CHECKED_AUDIO=anti_aliasing.band_limit(audio, rate),
            CHECKED_SAMPLE_RATE=stub.get(request, "SAMPLE_RATE"),
            MEL_OFFSET=np.array([offset // framing.HOP], np.int64),
            CHECKED_FIRST_FRAME=np.array([first], np.int64),
            CHECKED_FRAME_COUNT=np.array([count], np.int64),
        )


def _optional(request, name: str) -> int | None:
    value = stub.get(request, name)
    return None if value is None else int(value[0])
