"""triton-lipsync's client: renders speech into lip-synced video frames on a Triton server
(lipsync.client.LipsyncClient, the `lipsync` command). Kept free of imports: the server's
python-backend models import lipsync.framing without loading the client's transport."""
