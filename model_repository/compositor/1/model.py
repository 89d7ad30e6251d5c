"""Pastes generated faces into the avatar's frames along its loop and JPEG-encodes them."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lipsync import compositing, framing
from lipsync.avatar import AvatarStore
from lipsync.serving import triton


class TritonPythonModel:
    def initialize(self, args):
        config = triton.model_config(args)
        self.quality = int(triton.parameter(config, "jpeg_quality", "75"))
        cache = int(triton.parameter(config, "frame_cache", "128"))
        self.avatars = AvatarStore(Path(args["model_repository"]).parent, frame_cache=cache)
        # Decoding, resizing and JPEG encoding release the GIL: frames encode in parallel.
        self.pool = ThreadPoolExecutor(int(triton.parameter(config, "encode_threads", "2")))

    def execute(self, requests):
        return [self._composite(request) for request in requests]

    def _composite(self, request):
        name = triton.text(request, "AVATAR")
        start = int(triton.get(request, "START_FRAME")[0])
        faces = triton.get(request, "FACES")
        try:
            media = self.avatars.get(name)
        except (OSError, ValueError) as error:
            return triton.internal(f"avatar {name!r} media unreadable: {error}")

        def frame(i):
            index = framing.pingpong(start + i, len(media))
            composed = compositing.paste_face(media.background(index), media.rects[index], faces[i])
            return compositing.encode_jpeg(composed, self.quality)

        try:
            jpegs = list(self.pool.map(frame, range(len(faces))))
        except Exception as error:
            return triton.internal(f"compositing failed: {error}")
        return triton.respond(FRAMES=np.array(jpegs, dtype=np.object_))

    def finalize(self):
        self.pool.shutdown()
