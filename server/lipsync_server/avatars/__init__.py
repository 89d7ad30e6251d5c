"""Avatars in a model repository: their media, crop geometry and compositing, and the tools that
write them (repository writer, SyncTalk_2D importer, INT8 quantization, TensorRT plans)."""
