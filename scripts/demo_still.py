"""Writes the README's still of the demo: the face of the frame with the widest-open mouth beside
one with a closed mouth during a pause, from a video `make demo` rendered.

    python scripts/demo_still.py out/demo.mp4 docs/demo-frame.png
"""

import argparse
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image

from lipsync_protocol import framing
from lipsync_server.avatars.media import AvatarMedia, media_dir
from lipsync_server.demo import synthetic

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--pause", type=float, nargs=2, default=(3.0, 3.8), help="seconds of the pause in the audio")
    args = parser.parse_args()
    media = AvatarMedia(media_dir(args.repository, "demo"))
    with av.open(str(args.video)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    rects = [media.rects[framing.pingpong(i, len(media))] for i in range(len(frames))]
    areas = [synthetic.dark_area(frame, synthetic.mouth_box(rect)) for frame, rect in zip(frames, rects)]
    opened = int(np.argmax(areas))
    closed = round(np.mean(args.pause) * framing.FPS)
    faces = []
    for index in (opened, closed):
        x1, y1, x2, y2 = rects[index]
        faces.append(frames[index][y1 - 150 : y2 + 20, x1 - 40 : x2 + 40])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(faces, axis=1)).save(args.output, optimize=True)
    print(f"wrote {args.output}: frames {opened} (mouth dark area {areas[opened]}) and {closed} ({areas[closed]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
