"""GPU profile: the DALI backend serializes this pipeline itself when the model loads, with the
DALI it was built with, so the image holds one DALI. The pipeline is lipsync_server/audio/mel_pipeline.py,
the one the CPU profile runs, with the signal processing on the GPU; its batch is config.pbtxt's
max_batch_size."""

from nvidia.dali import pipeline_def
from nvidia.dali.plugin.triton import autoserialize

from lipsync_server.audio import mel_pipeline

MAX_BATCH_SIZE = 8


@autoserialize
@pipeline_def(batch_size=MAX_BATCH_SIZE, num_threads=4, device_id=0, prefetch_queue_depth=1)
def mel():
    return mel_pipeline.mel_from_inputs(device="gpu")
