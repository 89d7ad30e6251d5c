"""What a valid lip-sync request is. Each failed check names the input and the problem."""

import numpy as np

from lipsync_protocol import avatar_names, framing
from lipsync_protocol.messages import quoted

MAX_SAMPLE_RATE = 192_000
MIN_SAMPLE_RATE = 8_000
MAX_START_FRAME = 2**40  # positions wrap around the avatar's loop; this only bounds the number
MAX_VERSION = 2**31 - 1
MAX_WAIT_MS = 3_600_000
# Float audio is in [-1, 1]; real files overshoot a little (decoders, resamplers). Far beyond is
# integer PCM sent as floats, or garbage: it would render wrong lips without a word.
MAX_PEAK = 2.0


class InvalidInput(ValueError):
    pass


def check_audio(audio: np.ndarray, sample_rate: int, max_seconds: float) -> None:
    if audio.ndim != 1:
        raise InvalidInput(f"AUDIO: expected one channel of samples (shape [1, n]), got shape {list(audio.shape)}")
    if audio.size == 0:
        raise InvalidInput("AUDIO: is empty")
    seconds = audio.size / sample_rate
    shortest = framing.MIN_SAMPLES / framing.SAMPLE_RATE
    if seconds < shortest:
        raise InvalidInput(
            f"AUDIO: {audio.size} samples at {sample_rate} Hz is too short: at least {shortest:.4f} s is needed"
        )
    check_duration(audio.size, sample_rate, max_seconds)
    if not np.isfinite(audio).all():
        raise InvalidInput("AUDIO: contains NaN or infinite samples")
    peak = float(np.abs(audio).max())
    if peak > MAX_PEAK:
        raise InvalidInput(
            f"AUDIO: peak amplitude {peak:.6g} is beyond {MAX_PEAK:g}: samples are floats in [-1, 1] "
            "(scale 16-bit PCM by 1/32768, 32-bit PCM by 1/2147483648)"
        )


def check_duration(samples: int, sample_rate: int, max_seconds: float, name: str = "AUDIO") -> None:
    seconds = samples / sample_rate
    if seconds > max_seconds:
        raise InvalidInput(f"{name}: {seconds:.1f} s is longer than this server's limit of {max_seconds:g} s")


def check_sample_rate(rate: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InvalidInput(f"SAMPLE_RATE: {rate} Hz is outside the supported {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")


def check_avatar(name: str, exists) -> None:
    try:
        avatar_names.check_name(name)
    except avatar_names.AvatarNameError as error:
        raise InvalidInput(f"AVATAR: {error}") from None
    if not exists(name):
        raise InvalidInput(f"AVATAR: unknown avatar {quoted(name)}")


def check_start_frame(start: int) -> None:
    if start < 0:
        raise InvalidInput(f"START_FRAME: must be >= 0, got {start}")
    if start > MAX_START_FRAME:
        raise InvalidInput(f"START_FRAME: {start} is larger than {MAX_START_FRAME}")


def check_version(version: int) -> None:
    if not 0 <= version <= MAX_VERSION:
        raise InvalidInput(f"AVATAR_VERSION: must be a version number >= 1, or 0 for the latest; got {version}")


def check_audio_offset(offset: int, rate: int) -> None:
    if offset < 0 or offset % framing.BLOCK_SAMPLES:
        raise InvalidInput(f"AUDIO_OFFSET: must be a multiple of {framing.BLOCK_SAMPLES} samples >= 0, got {offset}")
    if offset and rate != framing.SAMPLE_RATE:
        raise InvalidInput(
            f"AUDIO_OFFSET: streamed segments must be {framing.SAMPLE_RATE} Hz audio, got SAMPLE_RATE {rate}"
        )


def frame_range(first: int | None, count: int | None, frames: int) -> tuple[int, int]:
    """The clip frames to render: FIRST_FRAME (default 0) and FRAME_COUNT (default: the rest)."""
    first = 0 if first is None else first
    if not 0 <= first < frames:
        raise InvalidInput(f"FIRST_FRAME: {first} is outside this audio's {frames} frames")
    count = frames - first if count is None else count
    if not 1 <= count <= frames - first:
        raise InvalidInput(f"FRAME_COUNT: {count} frames from FIRST_FRAME {first} do not fit in {frames} frames")
    return first, count


MIN_FRAME_SIDE = 16
MAX_FRAME_SIDE = 16384


def frame_size(given: np.ndarray | None, avatar_size: tuple[int, int]) -> tuple[int, int]:
    """FRAME_SIZE as (width, height), or (0, 0) for the avatar's own size: when absent, and when
    it asks for more than the avatar's own (frames are made smaller, never larger)."""
    if given is None:
        return 0, 0
    if given.shape != (2,):
        raise InvalidInput(f"FRAME_SIZE: expected [width, height], got shape {list(given.shape)}")
    width, height = (int(v) for v in given)
    if not (MIN_FRAME_SIDE <= width <= MAX_FRAME_SIDE and MIN_FRAME_SIDE <= height <= MAX_FRAME_SIDE):
        raise InvalidInput(f"FRAME_SIZE: {width}x{height}: each side must be {MIN_FRAME_SIDE}-{MAX_FRAME_SIDE} pixels")
    if width >= avatar_size[0] or height >= avatar_size[1]:
        return 0, 0
    return width, height


def check_max_wait_ms(given: int | None) -> None:
    """MAX_WAIT_MS, when given: the time from arrival by which the request's frames must be done."""
    if given is not None and not 1 <= given <= MAX_WAIT_MS:
        raise InvalidInput(f"MAX_WAIT_MS: must be 1-{MAX_WAIT_MS} milliseconds, got {given}")
