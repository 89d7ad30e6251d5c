"""The lip-sync server's own code: what its python-backend models run, the tritonserver launcher,
and the tools that write into a model repository (lipsync-server import, quantize, plans)."""
