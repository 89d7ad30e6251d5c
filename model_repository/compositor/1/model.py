"""Pastes generated faces into the avatar's frames along its loop and JPEG-encodes them, at the
size the request asked for (the ticket's: the frame and its crop square scaled, the face pasted
into that)."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lipsync_protocol import framing
from lipsync_server.avatars import compositing
from lipsync_server.avatars.media import AvatarStore
from lipsync_server.backend import stub, ticket


class TritonPythonModel:
    def initialize(self, args):
        config = stub.model_config(args)
        self.secret = ticket.secret()
        self.quality = int(stub.parameter(config, "jpeg_quality"))
        cache = int(stub.parameter(config, "frame_cache"))
        self.avatars = AvatarStore(Path(args["model_repository"]).parent, frame_cache=cache)
        # Decoding, resizing and JPEG encoding release the GIL: frames encode in parallel.
        self.pool = ThreadPoolExecutor(int(stub.parameter(config, "encode_threads")))

    def execute(self, requests):
        return stub.each(requests, self._composite)

    def _composite(self, request):
        try:
            checked = stub.ticket(request, self.secret)
        except ticket.TicketError as error:
            return stub.invalid_arg(str(error))
        name, start = checked.avatar, checked.start
        faces = stub.get(request, "FACES")
        if len(faces) != checked.count:
            return stub.invalid_arg(f"FACES: {len(faces)} faces, but {checked.count} frames are to be made")
        try:
            media = self.avatars.get(name)
        except (OSError, ValueError) as error:
            return stub.internal(f"avatar {name!r} media unreadable: {error}")

        size = checked.frame_size

        def frame(i):
            index = framing.pingpong(start + i, len(media))
            background = media.background(index, size)
            rect = compositing.scaled_rect(media.rects[index], media.frame_size, size)
            composed = compositing.paste_face(background, rect, faces[i], media.paste)
            return compositing.encode_jpeg(composed, self.quality)

        try:
            jpegs = list(self.pool.map(frame, range(len(faces))))
        except Exception as error:
            return stub.internal(f"compositing failed: {error}")
        return stub.respond(FRAMES=np.array(jpegs, dtype=np.object_))

    def finalize(self):
        self.pool.shutdown()
