"""Writes short test videos from a real photograph; run by the extraction env's python.

    python tests/make_video.py OUT.mp4 [--frames N] [--size S] [--fps F]

scikit-image's `astronaut()` (a photograph of a person: face and upper body, hands
outside the picture) is scaled to S×S and shifted by a few pixels a frame, so the clip
looks like a steady camera with a little motion. Written with OpenCV (mp4v).
"""

import argparse

import cv2
import numpy as np
from skimage import data


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()
    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    photo = cv2.resize(photo, (args.size, args.size), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*"mp4v"), args.fps,
                             (args.size, args.size))
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {args.out}")
    for i in range(args.frames):
        shift = np.float32([[1, 0, 2 * i], [0, 1, i]])  # 2 px right, 1 px down a frame
        writer.write(cv2.warpAffine(photo, shift, (args.size, args.size),
                                    borderMode=cv2.BORDER_REPLICATE))
    writer.release()


if __name__ == "__main__":
    main()
