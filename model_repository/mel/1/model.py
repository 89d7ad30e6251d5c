"""CPU profile of mel: the DALI mel pipeline run through DALI's Python API."""

from lipsync_server.audio import mel_pipeline
from lipsync_server.backend import stub


class TritonPythonModel:
    def initialize(self, args):
        config = stub.model_config(args)
        threads = int(stub.parameter(config, "dali_threads", "2"))
        self.pipeline = mel_pipeline.build(batch_size=config["max_batch_size"], num_threads=threads)
        self.pipeline.build()

    def execute(self, requests):
        audio = [stub.get(r, "AUDIO") for r in requests]
        rates = [int(stub.get(r, "SAMPLE_RATE")[0]) for r in requests]
        try:
            mels = mel_pipeline.run(self.pipeline, audio, rates)
        except Exception as error:  # the requests were validated upstream: this is our fault
            return [stub.internal(f"mel pipeline failed: {error}")] * len(requests)
        return [stub.respond(MEL=mel) for mel in mels]
