"""The two ways a server of this project runs, and everything that differs between them.

A profile names the model configs the server reads and what the hardware under it allows; an
installation names where tritonserver and its backends are. The command line is otherwise one
(tritonserver.TritonServer.command), the same for the launcher, `make cluster`, the image and
the chart.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    config_name: str  # --model-config-name: configs/<name>.pbtxt, or config.pbtxt for "config"
    gpu_metrics: bool
    tensorrt_plans: bool  # its models include TensorRT plans, built from the ONNX files


GPU = Profile("gpu", "config", gpu_metrics=True, tensorrt_plans=True)
CPU = Profile("cpu", "cpu", gpu_metrics=False, tensorrt_plans=False)
PROFILES = {profile.name: profile for profile in (GPU, CPU)}


def named(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, not {name[:32]!r}") from None
