"""How audio length maps to mel frames, encoder windows and video frames (SyncTalk_2D rules).

Everything here is the reference inference's arithmetic, kept in one place: the client uses it
to predict frame counts, request_validator to give the audio encoder its windows, the tests
check it.
"""

SAMPLE_RATE = 16_000
N_FFT = 800
HOP = 200
N_MELS = 80
MEL_PER_SECOND = SAMPLE_RATE // HOP  # 80
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
WINDOW = 16  # mel frames per encoder window
CONTEXT = 8  # encoder vectors on each side of a video frame
BLOCK_SAMPLES = 5 * SAMPLES_PER_FRAME  # 3200: 5 video frames = 16 mel frames, where windows realign
MIN_MEL_FRAMES = WINDOW
MIN_SAMPLES = (MIN_MEL_FRAMES - 1) * HOP  # shortest audio at 16 kHz that yields one window
MAX_SECONDS = 600  # hard cap of the exported graph; servers configure a lower limit
MAX_MEL_FRAMES = 1 + MAX_SECONDS * SAMPLE_RATE // HOP


def resampled_length(samples: int, sample_rate: int) -> int:
    """Samples after resampling to 16 kHz (DALI's audio_resample rounds up)."""
    return -(-samples * SAMPLE_RATE // sample_rate)


def mel_frame_count(samples_16k: int) -> int:
    """Centred STFT: one frame per hop plus one."""
    return 1 + samples_16k // HOP


def window_count(mel_frames: int) -> int:
    """The reference's encoder-window count, float rounding included."""
    return int((mel_frames - WINDOW) / float(MEL_PER_SECOND) * float(FPS)) + 2


def frame_count(samples_16k: int, mel_offset: int = 0) -> int:
    """Video frames rendered for audio of this many samples at 16 kHz.

    The encoder outputs are padded with a copy of the first and last vector, and every padded
    vector yields one frame: window_count + 2. For the last segment of a stream that starts
    `mel_offset` mel frames in (a multiple of 16), the count follows the whole stream's length.
    """
    return window_count(mel_frame_count(samples_16k) + mel_offset) - mel_offset * FPS // MEL_PER_SECOND + 2


def window_start(index: int, mel_frames: int) -> int:
    """First mel frame of encoder window `index`, clamped so the window fits."""
    return min(int(MEL_PER_SECOND * (index / float(FPS))), mel_frames - WINDOW)


def window_starts(mel_frames: int, mel_offset: int = 0) -> list[int]:
    """First mel frame of every encoder window of a mel this long. For a segment of a stream
    that starts `mel_offset` mel frames in (a multiple of 16, where windows realign), how many
    windows follows the whole stream's length; the starts are the segment's own."""
    count = window_count(mel_frames + mel_offset) - mel_offset * FPS // MEL_PER_SECOND
    return [window_start(i, mel_frames) for i in range(count)]


def pingpong(position: int, n_frames: int) -> int:
    """Avatar frame shown at `position` of the loop that walks forward, then backward."""
    if n_frames == 1:
        return 0
    period = 2 * n_frames - 2
    step = position % period
    return step if step < n_frames else period - step
