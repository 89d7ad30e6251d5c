"""PyTorch definitions of the SyncTalk_2D networks, with the checkpoints' module names."""
