"""Small helpers over triton_python_backend_utils, importable only inside a Triton stub."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from .ticket import Ticket


def model_config(args: dict) -> dict:
    return json.loads(args["model_config"])


def parameter(config: dict, key: str) -> str:
    """The config's parameter `key`: its one home is the config (the code has no default)."""
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    if value is None:
        raise pb_utils.TritonModelException(f"{config.get('name')}: the config has no parameter {key!r}")
    return value


def get(request, name: str) -> np.ndarray | None:
    """The request's tensor `name` without its batch dimension of 1, or None if absent."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()[0]


def text(request, name: str) -> str:
    """A required BYTES input (Triton refuses a request without it) as text."""
    tensor = get(request, name)
    if tensor is None:
        raise KeyError(f"{name}: missing")
    value = tensor[0]
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def ticket(request, key: bytes) -> Ticket:
    """The request's TICKET, opened (ticket.TicketError unless request_validator issued it)."""
    tensor = get(request, "TICKET")
    value = b"" if tensor is None else tensor[0]
    return Ticket.open(value if isinstance(value, bytes) else str(value).encode(), key)


def each(requests, answer) -> list:
    """`answer(request)` for every request, a failure in one answering that request alone."""
    return [guarded(answer, request) for request in requests]


def guarded(answer, request):
    try:
        return answer(request)
    except Exception as error:  # a fault of ours for this request: the batch's others go on
        return internal(f"{type(error).__name__}: {error}")


def invalid_arg(message: str):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))


def unavailable(message: str):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.UNAVAILABLE))


def internal(message: str):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INTERNAL))


def respond(**outputs: np.ndarray):
    """A response whose outputs get a batch dimension of 1."""
    return pb_utils.InferenceResponse([pb_utils.Tensor(name, value[None]) for name, value in outputs.items()])
