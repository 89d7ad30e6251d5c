"""Generates the avatar's faces for a clip's audio features through the avatar's UNet (BLS)."""
import asyncio
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from lipsync import avatar, framing
from lipsync.avatar import AvatarStore
from lipsync.serving import triton


class TritonPythonModel:
    def initialize(self, args):
        config = triton.model_config(args)
        self.chunk = int(triton.parameter(config, "frames_per_unet_request", "8"))
        self.avatars = AvatarStore(Path(args["model_repository"]).parent)

    async def execute(self, requests):
        # All requests' UNet calls are in flight together, for the UNet's batcher to merge.
        return await asyncio.gather(*(self._generate(request) for request in requests))

    async def _generate(self, request):
        name = triton.text(request, "AVATAR")
        version = triton.get(request, "AVATAR_VERSION")
        version = int(version[0]) if version is not None else 0
        start = int(triton.get(request, "START_FRAME")[0])
        first, count = (int(triton.get(request, field)[0]) for field in ("FIRST_FRAME", "FRAME_COUNT"))
        features = triton.get(request, "AUDIO_FEATURES")[first : first + count]
        try:
            media = self.avatars.get(name)
        except (OSError, ValueError) as error:
            return triton.internal(f"avatar {name!r} media unreadable: {error}")
        frames = [framing.pingpong(start + i, len(media)) for i in range(len(features))]
        crops = media.faces[frames]
        calls = [
            self._unet(name, version, crops[i : i + self.chunk], features[i : i + self.chunk])
            for i in range(0, len(frames), self.chunk)
        ]
        results = await asyncio.gather(*calls)
        failed = [r for r in results if not isinstance(r, np.ndarray)]
        if failed:
            return failed[0]
        raw = np.concatenate(results)
        outputs = {}
        wanted = request.requested_output_names()
        if "FACES" in wanted:
            # The reference's uint8 conversion truncates; BGR -> RGB for the compositor.
            faces = (raw * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)[..., ::-1]
            outputs["FACES"] = np.ascontiguousarray(faces)
        if "FACES_RAW" in wanted:
            outputs["FACES_RAW"] = raw
        return triton.respond(**outputs)

    async def _unet(self, name, version, crops, features):
        request = pb_utils.InferenceRequest(
            model_name=avatar.model_name(name),
            model_version=version if version > 0 else -1,
            inputs=[pb_utils.Tensor("FACE", np.ascontiguousarray(crops)), pb_utils.Tensor("AUDIO_FEATURES", features)],
            requested_output_names=["FACE_RAW"],
        )
        response = await request.async_exec()
        if response.has_error():
            message = response.error().message()
            if "unknown model" in message or "not found" in message or "not ready" in message:
                which = f"version {version}" if version > 0 else "any version"
                return triton.invalid_arg(f"AVATAR: avatar {name!r} ({which}) is not loaded")
            return triton.internal(f"avatar {name!r} UNet failed: {message}")
        return pb_utils.get_output_tensor_by_name(response, "FACE_RAW").as_numpy()
