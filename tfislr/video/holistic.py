"""A video file → `[T, 543, 3]` landmark frames with MediaPipe Holistic (the legacy solution).

The competition's landmarks come from Holistic; the newer Tasks landmarkers give other
points. Holistic's models for `model_complexity=1` are inside the mediapipe 0.10.21 wheel,
so this runs offline (0 and 2 would download a model at run time, so they are not offered).
Runs in the extraction environment only (`scripts/extract_env.sh`).

Conventions, checked against the competition's files (the real sample in the Kaggle layout):

* **Rows**: face 468 (`refine_face_landmarks=False`; the refined model adds 10 iris points
  the competition does not have), left hand 21, pose 33, right hand 21, in that order; a
  part Holistic did not detect in a frame is NaN (all of its rows).
* **x, y**: Holistic's normalized image coordinates, x / width and y / height from the
  top-left corner, written unchanged and not clipped: pose points outside the picture go
  below 0 or above 1 (the real sample has pose y up to 3.1 and x down to -0.47).
* **z**: Holistic's relative depth, unchanged: face and hands relative to their own centre
  and wrist (a hand's wrist has z ≈ 0; the sample's is -1e-7), pose relative to the hips
  with a much larger spread (sample pose z from -4.9 to 3.9, face within ±0.23).
* **Left and right**: Holistic takes `left_hand_landmarks` from the pose's left wrist
  (pose landmark 15), and so does the competition: in the real sample the `left_hand` wrist
  lies at pose 15 (median distance 0.05 in x, y; 0.98 from pose 16) and the `right_hand`
  wrist at pose 16, so Holistic's parts map one to one with no swap. The pose model names
  sides as they look on a person facing the camera (its "left shoulder" is on the picture's
  right), which is the signer's own left in a video as a camera records it; in the sample
  the (mostly dominant) `right_hand` sits on the picture's left (mean x 0.30, `left_hand`
  0.62). A mirrored recording (a selfie preview saved as shown) therefore names the signer's
  right hand `left_hand`, like a left-handed signer: `mirror=True` flips each frame back
  first, restoring the names and x.
* **Frames**: one per decoded video frame, numbered from 0 in decoding order; a frame where
  Holistic found nothing is kept as all NaN (preprocessing drops frames without hands).

Holistic runs in video mode (tracking across frames, MediaPipe's default smoothing and
confidence thresholds); its state is reset between clips.
"""

import pathlib

import numpy as np

from tfislr import landmarks as lm
from tfislr.errors import DataError

# Holistic's result fields in the competition's part order.
_RESULT_FIELDS = {
    "face": "face_landmarks",
    "left_hand": "left_hand_landmarks",
    "pose": "pose_landmarks",
    "right_hand": "right_hand_landmarks",
}


def result_to_frame(results):
    """One Holistic result → float64 `[543, 3]`, NaN for the parts it did not detect."""
    frame = np.full((lm.NUM_RAW_LANDMARKS, lm.NUM_COORDINATES), np.nan)
    for part in lm.PART_ORDER:
        found = getattr(results, _RESULT_FIELDS[part])
        if found is None:
            continue
        start, stop = lm.PART_ROWS[part]
        points = [(p.x, p.y, p.z) for p in found.landmark]
        if len(points) != stop - start:
            raise RuntimeError(f"Holistic gave {len(points)} {part} landmarks, expected "
                               f"{stop - start}")
        frame[start:stop] = points
    return frame


def read_video(path):
    """Yields the RGB frames (uint8 `[H, W, 3]`) of a video file, in decoding order.

    Raises:
        DataError: the file cannot be opened as a video, or no frame can be decoded.
    """
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DataError(f"{path}: cannot be opened as a video (not a video, or an "
                            "unsupported format)")
        count = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            count += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if count == 0:
            raise DataError(f"{path}: no frame could be decoded (empty or damaged video)")
    finally:
        capture.release()


class HolisticExtractor:
    """Video file → `(frames [T, 543, 3] float64, frame_ids [T] int64)`; one per process.

    Use as a context manager (or call `close()`): building Holistic's graph takes about a
    second, so one extractor serves every clip and resets the tracking between them.

    Args:
        mirror: flip every frame horizontally before Holistic sees it (for recordings
            that were saved mirrored; see the module docstring).
    """

    def __init__(self, mirror=False):
        from mediapipe.python.solutions import holistic

        self.mirror = bool(mirror)
        self._holistic = holistic.Holistic(
            static_image_mode=False, model_complexity=1, refine_face_landmarks=False
        )
        self._used = False

    def __call__(self, path):
        path = pathlib.Path(path)
        if self._used:
            self._holistic.reset()  # no tracking state carried over from the last clip
        self._used = True
        frames = [self.frame(image) for image in read_video(path)]
        stacked = np.stack(frames)
        return stacked, np.arange(len(stacked), dtype=np.int64)

    def frame(self, image):
        """The next RGB image (uint8 `[H, W, 3]`) of the current clip or stream → float64
        `[543, 3]` (tracking carries over from the image before)."""
        if self.mirror:
            image = np.ascontiguousarray(image[:, ::-1])
        return result_to_frame(self._holistic.process(image))

    def close(self):
        self._holistic.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
