"""Imports a SyncTalk_2D checkpoint and dataset as a served avatar (same as `lipsync-server import`).

.venv/bin/python scripts/import_synctalk.py may --dataset dataset/May --checkpoint checkpoint/May/100.pth
.venv/bin/python scripts/import_synctalk.py may --checkpoint checkpoint/May/200.pth   # next version
.venv/bin/python scripts/import_synctalk.py obama --video obama.mp4 --rects crop_rects.json --checkpoint 50.pth --load
"""

import sys

from lipsync_server import cli

if __name__ == "__main__":
    sys.exit(cli.main(["import", *sys.argv[1:]]))
