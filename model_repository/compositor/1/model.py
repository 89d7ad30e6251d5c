"""Pastes generated faces into the avatar's frames along its loop and JPEG-encodes them."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lipsync import framing
from lipsync_server.avatars import compositing
from lipsync_server.avatars.media import AvatarStore
from lipsync_server.backend import stub


class TritonPythonModel:
    def initialize(self, args):
        config = stub.model_config(args)
        self.quality = int(stub.parameter(config, "jpeg_quality", "75"))
        cache = int(stub.parameter(config, "frame_cache", "128"))
        self.avatars = AvatarStore(Path(args["model_repository"]).parent, frame_cache=cache)
        # Decoding, resizing and JPEG encoding release the GIL: frames encode in parallel.
        self.pool = ThreadPoolExecutor(int(stub.parameter(config, "encode_threads", "2")))

    def execute(self, requests):
        return [self._composite(request) for request in requests]

    def _composite(self, request):
        name = stub.text(request, "AVATAR")
        start = int(stub.get(request, "START_FRAME")[0])
        faces = stub.get(request, "FACES")
        try:
            media = self.avatars.get(name)
        except (OSError, ValueError) as error:
            return stub.internal(f"avatar {name!r} media unreadable: {error}")

        def frame(i):
            index = framing.pingpong(start + i, len(media))
            composed = compositing.paste_face(media.background(index), media.rects[index], faces[i])
            return compositing.encode_jpeg(composed, self.quality)

        try:
            jpegs = list(self.pool.map(frame, range(len(faces))))
        except Exception as error:
            return stub.internal(f"compositing failed: {error}")
        return stub.respond(FRAMES=np.array(jpegs, dtype=np.object_))

    def finalize(self):
        self.pool.shutdown()
