"""Bad requests through the ensemble, over gRPC and HTTP: each is refused with INVALID_ARG (or
NOT_FOUND for an unknown model) and a message naming the input; requests batched with it are
unaffected, and the server keeps serving."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from keyed import inference_headers
from tritonclient.utils import InferenceServerException

from lipsync.transport import infer_inputs
from lipsync_protocol import framing

pytestmark = pytest.mark.integration
MODULES = {"grpc": grpcclient, "http": httpclient}
INVALID = {"grpc": "StatusCode.INVALID_ARGUMENT", "http": "400"}


def request(audio=None, rate=16000, avatar=b"demo", start=0, version=None, audio_type="FP32", drop=(), extra=()):
    """Named input arrays (name, value, Triton type) of a lipsync request, changed as asked."""
    audio = np.zeros(4000, np.float32) + 0.01 if audio is None else audio
    values = [
        ("AUDIO", audio.reshape(1, -1) if audio.ndim == 1 else audio, audio_type),
        ("SAMPLE_RATE", np.array([[rate]], np.int32), "INT32"),
        ("AVATAR", np.array([[avatar]], np.object_), "BYTES"),
        ("START_FRAME", np.array([[start]], np.int64), "INT64"),
    ]
    if version is not None:
        values.append(("AVATAR_VERSION", np.array([[version]], np.int64), "INT64"))
    return [v for v in values if v[0] not in drop] + list(extra)


def infer(protocol, url, values, model="lipsync"):
    module = MODULES[protocol]
    result = module.InferenceServerClient(url).infer(
        model, infer_inputs(module, values), headers=inference_headers(protocol)
    )
    return result.as_numpy("FRAMES").reshape(-1)


SECONDS_61 = np.full(61 * 16000, 0.01, np.float32)
BAD = {
    "empty audio": (dict(audio=np.zeros(0, np.float32)), "AUDIO: is empty"),
    "one sample": (dict(audio=np.zeros(1, np.float32)), "AUDIO: 1 samples at 16000 Hz is too short"),
    "NaN": (dict(audio=np.full(4000, np.nan, np.float32)), "AUDIO: contains NaN or infinite samples"),
    "Inf": (dict(audio=np.r_[np.zeros(3999), np.inf].astype(np.float32)), "AUDIO: contains NaN or infinite samples"),
    "int16 audio": (dict(audio=np.zeros(4000, np.int16), audio_type="INT16"), "'AUDIO'"),
    "float64 audio": (dict(audio=np.zeros(4000, np.float64), audio_type="FP64"), "'AUDIO'"),
    "2-D audio": (dict(audio=np.zeros((1, 2, 4000), np.float32)), "'AUDIO'"),
    "over the length limit": (dict(audio=SECONDS_61), "AUDIO: 61.0 s is longer than this server's limit of 60 s"),
    "samples of 1e30": (dict(audio=np.full(4000, 1e30, np.float32)), "AUDIO: peak amplitude 1e+30 is beyond 2"),
    "16-bit PCM sent as floats": (
        dict(audio=(np.sin(np.arange(4000) / 9) * 32000).astype(np.float32)),
        "scale 16-bit PCM by 1/32768",
    ),
    "sample rate 0": (dict(rate=0), "SAMPLE_RATE: 0 Hz is outside the supported 8000-192000 Hz"),
    "negative sample rate": (dict(rate=-16000), "SAMPLE_RATE: -16000 Hz is outside"),
    "sample rate over 192 kHz": (dict(rate=192001), "SAMPLE_RATE: 192001 Hz is outside"),
    "unknown avatar": (dict(avatar=b"nobody"), "AVATAR: unknown avatar 'nobody'"),
    "avatar ../x": (dict(avatar=b"../x"), "AVATAR: invalid avatar name '../x'"),
    "avatar /etc": (dict(avatar=b"/etc"), "AVATAR: invalid avatar name '/etc'"),
    "avatar with NUL": (dict(avatar=b"demo\x00x"), "AVATAR: invalid avatar name 'demo\\x00x'"),
    "100 KB avatar name": (
        dict(avatar=b"x" * 100_000),
        "AVATAR: invalid avatar name '" + "x" * 64 + "'... (100000 characters)",
    ),
    "negative start frame": (dict(start=-1), "START_FRAME: must be >= 0, got -1"),
    "start frame out of range": (dict(start=2**40 + 1), f"START_FRAME: {2**40 + 1} is larger than {2**40}"),
    "unknown version": (dict(version=9), "AVATAR: avatar 'demo' (version 9) is not loaded"),
    "negative version": (dict(version=-2), "AVATAR_VERSION: must be a version number >= 1"),
    "zero wait bound": (
        dict(extra=[("MAX_WAIT_MS", np.zeros((1, 1), np.int64), "INT64")]),
        "MAX_WAIT_MS: must be 1-3600000 milliseconds, got 0",
    ),
    "negative wait bound": (
        dict(extra=[("MAX_WAIT_MS", np.full((1, 1), -5, np.int64), "INT64")]),
        "MAX_WAIT_MS: must be 1-3600000 milliseconds, got -5",
    ),
    "frame size of 8 pixels": (
        dict(extra=[("FRAME_SIZE", np.array([[8, 8]], np.int64), "INT64")]),
        "FRAME_SIZE: 8x8: each side must be 16-16384 pixels",
    ),
    "negative frame size": (
        dict(extra=[("FRAME_SIZE", np.array([[-640, 360]], np.int64), "INT64")]),
        "FRAME_SIZE: -640x360: each side must be 16-16384 pixels",
    ),
    "missing AUDIO": (dict(drop=("AUDIO",)), "missing required input(s) ['AUDIO']"),
    "missing AVATAR": (dict(drop=("AVATAR",)), "missing required input(s) ['AVATAR']"),
    "extra input": (
        dict(extra=[("EXTRA", np.zeros((1, 1), np.float32), "FP32")]),
        "unexpected inference input 'EXTRA'",
    ),
}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_invalid_arg_naming_the_input(urls, protocol, case):
    changes, message = BAD[case]
    with pytest.raises(InferenceServerException) as error:
        infer(protocol, urls[protocol], request(**changes))
    assert message in error.value.message()
    assert str(error.value.status()) == INVALID[protocol], error.value.message()
    assert len(infer(protocol, urls[protocol], request())) == framing.frame_count(4000)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize(
    "name, value, dtype",
    [
        ("AVATAR", np.array([[b"x" * 100_000]], np.object_), "BYTES"),
        ("AVATAR_VERSION", np.array([[b"7" * 100_000]], np.object_), "BYTES"),
    ],
    ids=["name", "version"],
)
def test_messages_quote_100_kb_inputs_in_part(urls, protocol, name, value, dtype):
    values = [v for v in request() if v[0] != name] + [(name, value, dtype)]
    with pytest.raises(InferenceServerException) as error:
        infer(protocol, urls[protocol], values)
    assert str(error.value.status()) == INVALID[protocol], error.value.message()[:200]
    assert name in error.value.message() and len(error.value.message()) < 512


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_unknown_model_is_not_found(urls, protocol):
    with pytest.raises(InferenceServerException) as error:
        infer(protocol, urls[protocol], request(), model="lipsync_nope")
    assert "lipsync_nope" in error.value.message()
    assert str(error.value.status()) == {"grpc": "StatusCode.NOT_FOUND", "http": "404"}[protocol]


def test_bad_requests_do_not_fail_the_requests_batched_with_them(grpc_url):
    # Sent together, the good and bad requests share the validator's, the face generator's and
    # the UNet's dynamic batches; each bad one fails alone, at its own step.
    speech = np.sin(np.arange(8000) / 8).astype(np.float32) * 0.1
    good = [request(audio=speech, start=s) for s in (0, 5, 9, 40)]
    bad = [
        request(audio=np.full(8000, np.nan, np.float32)),
        request(audio=speech, version=9),
        request(audio=speech, avatar=b"nobody"),
        request(audio=speech, rate=0),
    ]
    mixed = [r for pair in zip(good, bad) for r in pair]

    def outcome(values):
        try:
            return len(infer("grpc", grpc_url, values))
        except InferenceServerException as error:
            return str(error.status())

    with ThreadPoolExecutor(len(mixed)) as pool:
        results = list(pool.map(outcome, mixed))
    assert results[0::2] == [framing.frame_count(8000)] * 4
    assert results[1::2] == ["StatusCode.INVALID_ARGUMENT"] * 4
