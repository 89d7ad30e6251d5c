"""triton-lipsync's client: renders speech into lip-synced video frames on a Triton server
(lipsync.client.LipsyncClient, the `lipsync` command). What it shares with the server (frame
arithmetic, avatar names, keys, messages) is the protocol distribution, lipsync_protocol."""
