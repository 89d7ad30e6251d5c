"""The ensembles a client calls."""

ENSEMBLE = "lipsync"  # speech in, the avatar's JPEG frames out
RAW_ENSEMBLE = "lipsync_faces"  # speech in, the generated faces before pasting (FACES_RAW)
