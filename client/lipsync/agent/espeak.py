"""Text to speech offline: Debian's espeak-ng (`apt-get install espeak-ng`) as a Pipecat service.

The example agent speaks with it because it needs no model download; a deployment swaps it for
its own TTS service (Piper, Cartesia, ...), which the avatar takes the same way.
"""

import asyncio
import shutil
from collections.abc import AsyncGenerator, AsyncIterator

from pipecat.frames.frames import ErrorFrame, Frame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService

MAX_TEXT_CHARS = 2000  # one reply; longer text is refused, not cut
READ_BYTES = 8192  # espeak-ng writes as it synthesises: pass each piece on at once


class EspeakTTSService(TTSService):
    def __init__(self, voice: str = "en", words_per_minute: int = 160, **kwargs):
        settings = TTSSettings(model=None, voice=voice, language=None)
        super().__init__(push_start_frame=True, push_stop_frames=True, settings=settings, **kwargs)
        program = shutil.which("espeak-ng")
        if program is None:
            raise RuntimeError("espeak-ng is not installed: apt-get install espeak-ng")
        self.program: str = program
        self.words_per_minute = words_per_minute

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        if len(text) > MAX_TEXT_CHARS:
            yield ErrorFrame(error=f"text of {len(text)} characters: {MAX_TEXT_CHARS} at most")
            return
        # The text is one argument after "--": never read as an option.
        command = [
            self.program,
            "--stdout",
            "-v",
            str(self._settings.voice),
            "-s",
            str(self.words_per_minute),
            "--",
            text,
        ]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        assert process.stdout is not None
        try:
            await self.start_tts_usage_metrics(text)
            async for frame in self._stream_audio_frames_from_iterator(
                _chunks(process.stdout), strip_wav_header=True, context_id=context_id
            ):
                await self.stop_ttfb_metrics()
                yield frame
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def _chunks(stream: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while chunk := await stream.read(READ_BYTES):
        yield chunk
