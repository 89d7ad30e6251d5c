"""An avatar's UNet in the CPU profile: checks the avatar when it loads, then runs the
version's model.onnx on the CPU (onnx_model.py), in bfloat16 where that is allowed.

`precision` auto (the default) is bf16 where the CPU computes it natively and the version's
quality record (avatars/quality_record.py) reaches the bar, fp32 otherwise; fp32 or bf16 forces one.

A broken avatar (frames, rectangles or crops corrupt or missing; weights that are not this
network) fails to load with a message naming the problem, which Triton logs and returns to
the load call, instead of loading and failing requests later. Other avatars are untouched.
"""

from pathlib import Path

import triton_python_backend_utils as pb_utils

from lipsync_protocol import avatar_names
from lipsync_server import runtimes
from lipsync_server.avatars import media, quality_record

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
        except pb_utils.TritonModelException:
            raise
        except Exception as error:  # the runtimes' own errors: unreadable or invalid graph
            raise pb_utils.TritonModelException(
                f"avatar {name!r} version {args['model_version']}: model.onnx cannot be loaded: {error}"
            ) from None

    def check_graph(self, config: dict, tensors: list[runtimes.Tensor], args: dict) -> None:
        """The graph must take and give the tensors the avatar config declares, at its shapes."""
        declared = {t["name"]: [int(d) for d in t["dims"]] for t in config["input"] + config["output"]}
        found = {t.name: t.dims for t in tensors}
        if found != declared:
            name = avatar_names.avatar_name(args["model_name"])
            raise pb_utils.TritonModelException(
                f"avatar {name!r} version {args['model_version']}: model.onnx is not a lip-sync UNet: its tensors "
                f"are {found}, the avatar model needs {declared}"
            )

    def precision(self, config: dict, folder: Path) -> tuple[str, str]:
        asked = stub.parameter(config, "precision")
        if asked != "auto":
            return super().precision(config, folder)
        minimum = float(stub.parameter(config, "min_bf16_psnr_db"))
        return quality_record.served_precision(runtimes.has_native_bf16(), quality_record.bf16_psnr(folder), minimum)
