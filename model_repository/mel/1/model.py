"""CPU profile of mel: the DALI mel pipeline run through DALI's Python API."""

from lipsync import mel_pipeline
from lipsync.serving import triton


class TritonPythonModel:
    def initialize(self, args):
        config = triton.model_config(args)
        threads = int(triton.parameter(config, "dali_threads", "2"))
        self.pipeline = mel_pipeline.build(batch_size=config["max_batch_size"], num_threads=threads)
        self.pipeline.build()

    def execute(self, requests):
        audio = [triton.get(r, "AUDIO") for r in requests]
        rates = [int(triton.get(r, "SAMPLE_RATE")[0]) for r in requests]
        try:
            mels = mel_pipeline.run(self.pipeline, audio, rates)
        except Exception as error:  # the requests were validated upstream: this is our fault
            return [triton.internal(f"mel pipeline failed: {error}")] * len(requests)
        return [triton.respond(MEL=mel) for mel in mels]
