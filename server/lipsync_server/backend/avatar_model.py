"""An avatar's UNet in the CPU profile: checks the avatar when it loads, then runs the
version's model.onnx with ONNX Runtime (onnx_model.py).

A broken avatar (frames, rectangles or crops corrupt or missing; weights that are not this
network) fails to load with a message naming the problem, which Triton logs and returns to
the load call, instead of loading and failing requests later. Other avatars are untouched.
"""

from pathlib import Path

import triton_python_backend_utils as pb_utils

from lipsync import avatar_names
from lipsync_server.avatars import media

from . import onnx_model, stub


class TritonPythonModel(onnx_model.TritonPythonModel):
    def initialize(self, args):
        name = avatar_names.avatar_name(args["model_name"])
        folder = Path(args["model_repository"])
        try:
            media.AvatarMedia(folder / media.MEDIA).verify()
        except (OSError, ValueError) as error:
            raise pb_utils.TritonModelException(f"avatar {name!r}: media unusable: {error}") from None
        try:
            super().initialize(args)
        except Exception as error:  # ONNX Runtime's own errors: unreadable or invalid graph
            raise pb_utils.TritonModelException(
                f"avatar {name!r} version {args['model_version']}: model.onnx cannot be loaded: {error}"
            ) from None
        _check_graph(self.session, stub.model_config(args), name, args["model_version"])


def _check_graph(session, config: dict, name: str, version: str) -> None:
    """The graph must take and give the tensors the avatar config declares, at its shapes."""
    declared = {t["name"]: [int(d) for d in t["dims"]] for t in config["input"] + config["output"]}
    found = {t.name: list(t.shape[1:]) for t in session.get_inputs() + session.get_outputs()}
    if found != declared:
        raise pb_utils.TritonModelException(
            f"avatar {name!r} version {version}: model.onnx is not a lip-sync UNet: its tensors are {found}, "
            f"the avatar model needs {declared}"
        )
