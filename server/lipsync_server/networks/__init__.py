"""The SyncTalk_2D networks in PyTorch (with the checkpoints' module names), their checkpoints,
the graphs exported to ONNX for serving, and the rules TensorRT's ONNX parser imposes."""
