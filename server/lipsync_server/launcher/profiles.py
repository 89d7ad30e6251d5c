"""The two ways a server of this project runs, and everything that differs between them.

A profile names the model configs the server reads and what the hardware under it allows; an
installation names where tritonserver and its backends are. The command line is otherwise one
(tritonserver.TritonServer.command), the same for the launcher, `make cluster`, the image and
the chart.
"""

import os
from dataclasses import dataclass

# The profile a server runs: the chart sets it for the container, the launcher for its model
# processes (TritonServer.environment).
PROFILE_ENV = "LIPSYNC_PROFILE"


@dataclass(frozen=True)
class Profile:
    name: str
    config_name: str  # --model-config-name: configs/<name>.pbtxt, or config.pbtxt for "config"
    gpu_metrics: bool
    tensorrt_plans: bool  # its models include TensorRT plans, built from the ONNX files


GPU = Profile("gpu", "config", gpu_metrics=True, tensorrt_plans=True)
CPU = Profile("cpu", "cpu", gpu_metrics=False, tensorrt_plans=False)
PROFILES = {profile.name: profile for profile in (GPU, CPU)}


def current() -> Profile:
    """This process's profile, as its launcher or container set it (the CPU profile if unset)."""
    return named(os.environ.get(PROFILE_ENV, CPU.name))


def named(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, not {name[:32]!r}") from None
