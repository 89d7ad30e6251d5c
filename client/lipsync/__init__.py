"""triton-lipsync: real-time lip-sync video served by NVIDIA Triton Inference Server."""
