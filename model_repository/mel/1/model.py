"""CPU profile of mel: the DALI mel pipeline run through DALI's Python API. It checks what it
is given (the rate, and at most the server's longest audio), so that a direct call cannot
spend more than a request through the pipeline; each request is answered on its own."""

from pathlib import Path

from lipsync_server import model_configs
from lipsync_server.audio import mel_pipeline
from lipsync_server.backend import request_rules, stub
from lipsync_server.backend.request_rules import InvalidInput


class TritonPythonModel:
    def initialize(self, args):
        config = stub.model_config(args)
        threads = int(stub.parameter(config, "dali_threads"))
        self.max_seconds = model_configs.max_audio_seconds(Path(args["model_repository"]).parent)
        self.pipeline = mel_pipeline.build(batch_size=config["max_batch_size"], num_threads=threads)
        self.pipeline.build()

    def execute(self, requests):
        responses: list = [None] * len(requests)
        clips = {}
        for i, request in enumerate(requests):
            audio, rate = stub.get(request, "AUDIO"), int(stub.get(request, "SAMPLE_RATE")[0])
            try:
                request_rules.check_sample_rate(rate)
                request_rules.check_duration(audio.size, rate, self.max_seconds)
            except InvalidInput as error:
                responses[i] = stub.invalid_arg(str(error))
                continue
            clips[i] = (audio, rate)
        if not clips:
            return responses
        try:
            mels = mel_pipeline.run(self.pipeline, [a for a, _ in clips.values()], [r for _, r in clips.values()])
            answers = [stub.respond(MEL=mel) for mel in mels]
        except Exception:  # one at a time, so that a failure is only the failing request's
            answers = [stub.guarded(self._one, clip) for clip in clips.values()]
        for i, answer in zip(clips, answers):
            responses[i] = answer
        return responses

    def _one(self, clip):
        audio, rate = clip
        return stub.respond(MEL=mel_pipeline.run(self.pipeline, [audio], [rate])[0])
