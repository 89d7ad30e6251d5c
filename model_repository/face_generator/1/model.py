"""Makes a request's frames: the avatar's faces for its audio features through the avatar's
UNet (BLS), loading the avatar first if it is not resident (lipsync_server/backend/residency.py),
then pasted and encoded by the compositor (BLS). It acts on request_validator's ticket only
(lipsync_server/backend/ticket.py)."""

import asyncio
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from lipsync_protocol import avatar_names, framing, messages
from lipsync_server.avatars import tensorrt_plans
from lipsync_server.avatars.media import AvatarStore
from lipsync_server.backend import admission, memory, metrics, residency, stub, ticket
from lipsync_server.launcher import profiles

COMPOSITOR = "compositor"


class TritonPythonModel:
    def initialize(self, args):
        config = stub.model_config(args)
        self.secret = ticket.secret()
        self.chunk = int(stub.parameter(config, "frames_per_unet_request"))
        # Requests that would wait longer than their MAX_WAIT_MS, or take the frames in the works
        # past max_frames_in_flight, are turned away at once (UNAVAILABLE). execute() coroutines
        # share one event loop: the count needs no lock.
        self.admission = admission.Admission(int(stub.parameter(config, "max_frames_in_flight")))
        self.board = admission.Board(writer=True)  # for request_validator to refuse early
        self.metrics = metrics.Metrics(args["model_name"])
        self.metrics.refusals()
        self._publish()
        repository = Path(args["model_repository"]).parent
        self.avatars = AvatarStore(repository)
        self.residency = residency.Residency(
            repository,
            residency.budget(lambda key: stub.parameter(config, key), memory.gpu_memory()),
            residency.Triton(pb_utils),
            pb_utils.Logger.log_info,
            tensorrt_plans.on_demand(repository, profiles.current().tensorrt_plans),  # a missing plan first
            metrics.ResidencyMetrics(self.metrics),
        )

    def finalize(self):
        self.board.close()

    async def execute(self, requests):
        # All requests' UNet calls are in flight together, for the UNet's batcher to merge; each
        # request is answered on its own, whatever happens to the others.
        return await asyncio.gather(*(self._answer(request) for request in requests))

    async def _answer(self, request):
        try:
            return await self._generate(request)
        except Exception as error:  # a fault of ours for this request only
            return stub.internal(f"face generation failed: {type(error).__name__}: {error}")

    async def _generate(self, request):
        try:
            checked = stub.ticket(request, self.secret)
        except ticket.TicketError as error:
            return self._refuse(metrics.BAD_INPUT, stub.invalid_arg(str(error)))
        features = stub.get(request, "AUDIO_FEATURES")
        if checked.first + checked.count > len(features):
            return self._refuse(
                metrics.BAD_INPUT,
                stub.invalid_arg(
                    f"AUDIO_FEATURES: {len(features)} frames, but frames {checked.first}.."
                    f"{checked.first + checked.count - 1} are to be made"
                ),
            )
        name = checked.avatar
        self.residency.begin(name)  # not unloaded while this request needs it
        try:
            try:
                left_s = (checked.deadline_ns - time.monotonic_ns()) / 1e9
                refusal = await self.residency.ensure(name, checked.version, left_s)
            except (LookupError, RuntimeError) as error:
                return self._refuse(metrics.BAD_INPUT, stub.invalid_arg(str(error)))
            if refusal:
                reason = metrics.AVATAR_LOADING if messages.LOADING in refusal else metrics.AVATAR_UNAVAILABLE
                return self._refuse(reason, stub.unavailable(refusal))
            # Admitted once its avatar is resident: a load's time is not the UNet's service time.
            left_s = (checked.deadline_ns - time.monotonic_ns()) / 1e9
            refusal = self.admission.refusal(checked.count, left_s)
            if refusal:
                return self._refuse(metrics.BUSY, stub.unavailable(refusal))
            response = await self._admitted(request, checked, features[checked.first : checked.first + checked.count])
            if response.has_error() and response.error().code() == pb_utils.TritonError.UNAVAILABLE:
                self.metrics.refused(metrics.BUSY)  # the UNet's or the compositor's queue was full
            return response
        finally:
            self.residency.end(name)

    async def _admitted(self, request, checked, features):
        """_faces(), counted in the frames in the works and, when made, in the service rate."""
        self.admission.start(checked.count, time.monotonic())
        self._publish()
        made = False
        try:
            response = await self._faces(request, checked, features)
            made = not response.has_error()
            return response
        finally:
            self.admission.finish(checked.count, time.monotonic(), made)
            self._publish()

    def _publish(self) -> None:
        """The expected wait, for request_validator (the board) and for Prometheus."""
        wait_s = self.admission.expected_wait_s()
        self.board.publish(self.admission.frames, self.admission.rate.frames_per_s)
        self.metrics.series(metrics.EXPECTED_WAIT).set(wait_s)
        self.metrics.series(metrics.FRAMES_IN_FLIGHT).set(self.admission.frames)

    def _refuse(self, reason: str, response):
        self.metrics.refused(reason)
        return response

    async def _faces(self, request, checked, features):
        name, version = checked.avatar, checked.version
        try:
            media = self.avatars.get(name)
        except (OSError, ValueError) as error:
            return stub.internal(f"avatar {name!r} media unreadable: {error}")
        frames = [framing.pingpong(checked.start + i, len(media)) for i in range(len(features))]
        crops = media.faces[frames]
        asked = request.requested_output_names()
        # The UNet's uint8 faces become frames; its float output is made only when asked for.
        wanted = [name for ours, name in (("FRAMES", "FACE_RGB"), ("FACES_RAW", "FACE_RAW")) if ours in asked]
        calls = [
            self._unet(name, version, crops[i : i + self.chunk], features[i : i + self.chunk], wanted)
            for i in range(0, len(frames), self.chunk)
        ]
        results = await asyncio.gather(*calls)
        failed = [r for r in results if not isinstance(r, dict)]
        if failed:
            return failed[0]
        outputs = {}
        if "FACE_RAW" in wanted:
            outputs["FACES_RAW"] = np.concatenate([r["FACE_RAW"] for r in results])
        if "FACE_RGB" in wanted:
            faces = np.concatenate([r["FACE_RGB"] for r in results])
            frames = await self._composite(stub.get(request, "TICKET"), faces)
            if not isinstance(frames, np.ndarray):
                return frames
            outputs["FRAMES"] = frames
        return stub.respond(**outputs)

    async def _composite(self, sealed, faces):
        """The compositor's JPEG frames of these faces, or its error as our response."""
        request = pb_utils.InferenceRequest(
            model_name=COMPOSITOR,
            inputs=[pb_utils.Tensor("TICKET", sealed[None]), pb_utils.Tensor("FACES", faces[None])],
            requested_output_names=["FRAMES"],
            preferred_memory=pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0),
        )
        response = await request.async_exec()
        if response.has_error():
            message = response.error().message()
            if response.error().code() == pb_utils.TritonError.UNAVAILABLE:  # its queue is full
                return stub.unavailable(f"server busy: the compositor refused frames: {message}")
            return stub.internal(f"compositing failed: {message}")
        return pb_utils.get_output_tensor_by_name(response, "FRAMES").as_numpy()[0]

    async def _unet(self, name, version, crops, features, outputs):
        request = pb_utils.InferenceRequest(
            model_name=avatar_names.model_name(name),
            model_version=version if version > 0 else -1,
            inputs=[pb_utils.Tensor("FACE", np.ascontiguousarray(crops)), pb_utils.Tensor("AUDIO_FEATURES", features)],
            requested_output_names=outputs,
            # On GPU, a TensorRT model's outputs stay in GPU memory unless asked otherwise, and
            # as_numpy() refuses them; the faces go on to the CPU compositor anyway.
            preferred_memory=pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0),
        )
        response = await request.async_exec()
        if response.has_error():
            message = response.error().message()
            if "unknown model" in message or "not found" in message or "not ready" in message:
                which = f"version {version}" if version > 0 else "any version"
                return stub.invalid_arg(f"AVATAR: avatar {name!r} ({which}) is not loaded ({message})")
            if response.error().code() == pb_utils.TritonError.UNAVAILABLE:  # the UNet's queue is full
                return stub.unavailable(f"server busy: avatar {name!r} UNet rejected frames: {message}")
            return stub.internal(f"avatar {name!r} UNet failed: {message}")
        return {output: pb_utils.get_output_tensor_by_name(response, output).as_numpy() for output in outputs}
