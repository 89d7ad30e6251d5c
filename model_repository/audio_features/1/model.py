"""CPU profile of audio_features: the DALI mel pipeline run through DALI's Python API."""
import numpy as np
import triton_python_backend_utils as pb_utils

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
        rates = [triton.get(r, "SAMPLE_RATE").astype(np.int32) for r in requests]
        try:
            self.pipeline.feed_input("AUDIO", audio)
            self.pipeline.feed_input("SAMPLE_RATE", rates)
            (mel,) = self.pipeline.run()
        except Exception as error:  # the requests were validated upstream: this is our fault
            return [triton.internal(f"mel pipeline failed: {error}")] * len(requests)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("MEL", np.array(mel.at(i))[None])]) for i in range(len(requests))]
