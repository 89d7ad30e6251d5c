"""What a triton-lipsync client and its server agree on, with no more than NumPy and tenacity
under it: the frame and audio arithmetic (framing), avatar names (avatar_names), the ensembles'
names (ensemble), the keys and where they are found (keys), messages both sides read (messages)
and waiting for a server (waiting). The server's packages and the model repository's model.py
files import this and nothing else of the client."""
