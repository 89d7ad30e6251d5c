"""What anything on this machine can send to the server, refused: the requests a web page in a
local browser can make to 127.0.0.1 without asking (a cross-site POST with a simple content
type, the same after DNS rebinding with the page's own Host), and direct calls to the
pipeline's internal models, through the real tritonserver."""

import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from keyed import admin_headers, inference_headers
from tritonclient.utils import InferenceServerException

from lipsync.client import LipsyncClient
from lipsync.transport import infer_inputs
from lipsync_server.backend import ticket

pytestmark = pytest.mark.integration
SPEECH = (np.sin(np.arange(16000) / 7) * 0.3).astype(np.float32)
FEATURES = np.zeros((1, 200, 32, 16, 16), np.float32)


def post(server, path: str, body: str, headers: dict | None = None) -> tuple[int, str]:
    """A POST as a page's fetch() sends it without a preflight: text/plain, its own Origin."""
    connection = http.client.HTTPConnection(server.host, server.http_port, timeout=60)
    sent = {"Content-Type": "text/plain;charset=UTF-8", "Origin": "http://evil.example"} | (headers or {})
    connection.request("POST", path, body=body.encode(), headers=sent)
    response = connection.getresponse()
    return response.status, response.read().decode(errors="replace")


def get(server, path: str) -> tuple[int, str]:
    """A GET with the administrator key, as an administrator reads a setting."""
    connection = http.client.HTTPConnection(server.host, server.http_port, timeout=60)
    connection.request("GET", path, headers=admin_headers("http"))
    response = connection.getresponse()
    return response.status, response.read().decode(errors="replace")


def infer_body() -> str:
    return json.dumps(
        {
            "inputs": [
                {"name": "AUDIO", "shape": [1, SPEECH.size], "datatype": "FP32", "data": SPEECH.tolist()},
                {"name": "SAMPLE_RATE", "shape": [1, 1], "datatype": "INT32", "data": [16000]},
                {"name": "AVATAR", "shape": [1, 1], "datatype": "BYTES", "data": ["demo"]},
                {"name": "START_FRAME", "shape": [1, 1], "datatype": "INT64", "data": [0]},
            ]
        }
    )


def own_regions(server) -> list[Path]:
    return sorted(Path("/dev/shm").glob(server.shm_prefix + "*"))


@pytest.mark.parametrize(
    "rebound", [False, True], ids=["cross-site", "rebound host"]
)  # DNS rebinding: the page's host name, now pointing at 127.0.0.1
@pytest.mark.parametrize(
    "path, body",
    [
        ("/v2/systemsharedmemory/region/page/register", '{"key": "/page_region", "offset": 0, "byte_size": 64}'),
        (
            "/v2/cudasharedmemory/region/page/register",
            '{"raw_handle": {"b64": "AAAA"}, "device_id": 0, "byte_size": 64}',
        ),
        ("/v2/logging", '{"log_verbose_level": 1}'),
        ("/v2/trace/setting", '{"trace_level": ["TIMESTAMPS"], "trace_rate": "1"}'),
        ("/v2/repository/models/lipsync/unload", "{}"),
        ("/v2/models/lipsync/infer", None),
    ],
    ids=["shm register", "cuda shm register", "logging", "trace", "unload", "infer"],
)
def test_a_web_page_gets_a_refusal_from_every_api(server, path, body, rebound):
    headers = {"Host": f"evil.example:{server.http_port}", "Origin": f"http://evil.example:{server.http_port}"}
    status, answer = post(server, path, infer_body() if body is None else body, headers if rebound else None)
    assert status == 403, answer
    assert "This API is restricted" in answer


def test_the_servers_own_shared_memory_cannot_be_registered_without_the_key(server):
    regions = own_regions(server)
    assert regions, "the python backend's regions were not found"
    body = json.dumps({"key": regions[0].name, "offset": 0, "byte_size": 64})
    status, answer = post(server, "/v2/systemsharedmemory/region/theirs/register", body)
    assert status == 403, answer
    status, answer = get(server, "/v2/systemsharedmemory/status")
    assert status == 200 and "theirs" not in answer


def test_nothing_was_changed_or_rendered_by_the_refused_requests(server):
    for path, body in (("/v2/logging", '{"log_verbose_level": 3}'), ("/v2/models/lipsync/infer", infer_body())):
        assert post(server, path, body)[0] == 403
    stats = LipsyncClient(f"127.0.0.1:{server.grpc_port}").statistics()
    before = stats["lipsync/1"]["requests"] + stats["lipsync/1"]["failures"]
    assert post(server, "/v2/models/lipsync/infer", infer_body())[0] == 403
    stats = LipsyncClient(f"127.0.0.1:{server.grpc_port}").statistics()
    assert stats["lipsync/1"]["requests"] + stats["lipsync/1"]["failures"] == before
    status, answer = get(server, "/v2/logging")
    assert status == 200 and json.loads(answer)["log_verbose_level"] == 0


def test_http_inference_with_the_inference_key_renders(server):
    status, answer = post(server, "/v2/models/lipsync/infer", infer_body(), inference_headers("http"))
    assert status == 200, answer[:200]
    outputs = {output["name"]: output for output in json.loads(answer)["outputs"]}
    assert outputs["FRAMES"]["shape"] == [1, 24]


def test_health_stays_open_for_probes_and_balancers(server):
    connection = http.client.HTTPConnection(server.host, server.http_port, timeout=10)
    connection.request("GET", "/v2/health/ready")
    assert connection.getresponse().status == 200


def grpc_call(server, model: str, tensors, output: str) -> np.ndarray:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    return client.infer(model, infer_inputs(grpcclient, tensors)).as_numpy(output)


def forged_ticket(count: int = 200) -> np.ndarray:
    sealed = ticket.Ticket("demo", 0, 0, 0, count, 2**62, 0).seal(b"a guess at the secret, 32 bytes!")
    return np.array([[sealed]], np.object_)


def refused(call) -> str:
    with pytest.raises(InferenceServerException) as error:
        call()
    assert "StatusCode.INVALID_ARGUMENT" in str(error.value.status()), error.value.message()
    return error.value.message()


def test_face_generator_refuses_a_direct_call(server):
    tensors = [("TICKET", forged_ticket(), "BYTES"), ("AUDIO_FEATURES", FEATURES, "FP32")]
    message = refused(lambda: grpc_call(server, "face_generator", tensors, "FRAMES"))
    assert "TICKET: not issued by this server's request_validator" in message


def test_the_compositor_refuses_a_direct_call(server):
    faces = np.zeros((1, 200, 320, 320, 3), np.uint8)
    tensors = [("TICKET", forged_ticket(), "BYTES"), ("FACES", faces, "UINT8")]
    message = refused(lambda: grpc_call(server, "compositor", tensors, "FRAMES"))
    assert "TICKET: not issued" in message


def validator_ticket(server, samples: int = 8000) -> np.ndarray:
    """A genuine ticket, from calling request_validator directly with a valid request."""
    tensors = [
        ("AUDIO", np.full((1, samples), 0.01, np.float32), "FP32"),
        ("SAMPLE_RATE", np.array([[16000]], np.int32), "INT32"),
        ("AVATAR", np.array([[b"demo"]], np.object_), "BYTES"),
        ("START_FRAME", np.array([[0]], np.int64), "INT64"),
    ]
    return grpc_call(server, "request_validator", tensors, "TICKET")


def test_a_genuine_ticket_does_not_stretch_to_more_frames_or_faces(server):
    sealed = validator_ticket(server)  # 8000 samples: 11 frames
    features = [("TICKET", sealed, "BYTES"), ("AUDIO_FEATURES", FEATURES[:, :5], "FP32")]
    message = refused(lambda: grpc_call(server, "face_generator", features, "FRAMES"))
    assert "AUDIO_FEATURES: 5 frames, but frames 0..10 are to be made" in message
    faces = [("TICKET", sealed, "BYTES"), ("FACES", np.zeros((1, 200, 320, 320, 3), np.uint8), "UINT8")]
    message = refused(lambda: grpc_call(server, "compositor", faces, "FRAMES"))
    assert "FACES: 200 faces, but 11 frames are to be made" in message


def test_a_genuine_ticket_makes_only_its_own_frames(server):
    sealed = validator_ticket(server)
    frames = grpc_call(
        server, "face_generator", [("TICKET", sealed, "BYTES"), ("AUDIO_FEATURES", FEATURES, "FP32")], "FRAMES"
    )
    assert frames.shape == (1, 11)


@pytest.mark.parametrize(
    "model, tensors, expected",
    [
        (
            "mel",
            [
                ("AUDIO", np.zeros((1, 61 * 16000), np.float32), "FP32"),
                ("SAMPLE_RATE", np.array([[16000]], np.int32), "INT32"),
            ],
            "AUDIO: 61.0 s is longer than this server's limit of 60 s",
        ),
        (
            "mel",
            [("AUDIO", np.zeros((1, 4000), np.float32), "FP32"), ("SAMPLE_RATE", np.array([[1]], np.int32), "INT32")],
            "SAMPLE_RATE: 1 Hz is outside",
        ),
        (
            "audio_encoder",
            [
                ("MEL", np.zeros((1, 6100, 80), np.float32), "FP32"),
                ("WINDOW_STARTS", np.zeros((1, 5), np.int64), "INT64"),
            ],
            "MEL: 6100 frames is more than",
        ),
        (
            "audio_encoder",
            [
                ("MEL", np.zeros((1, 40, 80), np.float32), "FP32"),
                ("WINDOW_STARTS", np.zeros((1, 900), np.int64), "INT64"),
            ],
            "WINDOW_STARTS: 900 windows for 40 mel frames (1 to 10)",
        ),
    ],
    ids=["mel too long", "mel bad rate", "encoder too long", "encoder too many windows"],
)
def test_the_audio_steps_check_their_own_inputs(server, model, tensors, expected):
    output = "MEL" if model == "mel" else "AUDIO_FEATURES"
    assert expected in refused(lambda: grpc_call(server, model, tensors, output))


def test_a_bad_request_batched_with_good_ones_fails_alone(server):
    """Good and bad calls at once to the models that batch requests (face_generator, mel):
    every good one is served and every bad one refused, whichever shared an execute()."""
    rate = [("SAMPLE_RATE", np.array([[16000]], np.int32), "INT32")]
    calls = {
        "render": None,  # through the ensemble: request_validator, mel, face_generator, compositor
        "mel": ("mel", [("AUDIO", SPEECH[None], "FP32"), *rate], "MEL"),
        "bad mel": (
            "mel",
            [("AUDIO", SPEECH[None], "FP32"), ("SAMPLE_RATE", np.array([[0]], np.int32), "INT32")],
            "MEL",
        ),
        "bad faces": (
            "face_generator",
            [("TICKET", forged_ticket(), "BYTES"), ("AUDIO_FEATURES", FEATURES[:, :10], "FP32")],
            "FRAMES",
        ),
    }
    kinds = list(calls) * 4
    start = threading.Barrier(len(kinds))

    def call(kind: str) -> str:
        start.wait()
        try:
            if calls[kind] is None:
                frames = LipsyncClient(f"127.0.0.1:{server.grpc_port}").render(SPEECH, 16000, "demo")
                return "served" if len(frames) == 24 else f"{len(frames)} frames"
            return "served" if grpc_call(server, *calls[kind]).size else "empty"
        except InferenceServerException as error:
            return f"{error.status()} {error.message()[:100]}"

    with ThreadPoolExecutor(len(kinds)) as pool:
        outcomes = list(zip(kinds, pool.map(call, kinds)))
    for kind, outcome in outcomes:
        assert outcome.startswith("StatusCode.INVALID_ARGUMENT" if kind.startswith("bad") else "served"), outcomes
