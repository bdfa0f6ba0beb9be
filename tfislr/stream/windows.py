"""The baseline: fixed sliding windows over the stream, consecutive equal labels merged.

What a stream recognizer does without segmentation (a browser demo of the competition's
data fills a fixed window): every `stride` frames, the last `window` frames are classified
as one clip if at least `min_hand_frames` of them have a hand; windows below
`min_confidence`, or with too few hand frames, are "nothing". A run of consecutive windows
with the same top-1 sign is one sign, from the first window's first frame to the last
window's last frame, with the top k of its most confident window; it is emitted when the
run ends (another sign, or nothing). Memory: the last `window` frames.
"""

import collections

import numpy as np

from tfislr import landmarks as lm
from tfislr.checks import check_int, check_range
from tfislr.stream.recognizer import RecognizedSign, top_k_signs

_HAND_ROWS = list(lm.HAND_ROWS)
# Chosen on the tuning signers of benchmarks/stream.py --tune (docs/stream.md).
WINDOW, STRIDE, WINDOW_CONFIDENCE = 24, 12, 0.5


class SlidingWindowRecognizer:
    """The baseline with `StreamRecognizer`'s interface (`push`, `flush`, `run`).

    Args:
        classify, names, top_k, min_confidence, fps: as `StreamRecognizer`'s.
        window: frames a window.
        stride: frames between two windows' ends.
        min_hand_frames: a window with fewer frames with a hand is not classified.
    """

    def __init__(self, classify, names, window=WINDOW, stride=STRIDE, top_k=3,
                 min_confidence=WINDOW_CONFIDENCE, min_hand_frames=4, fps=30.0):
        self.classify = classify
        self.names = list(names)
        self.window = check_int("window", window)
        self.stride = check_int("stride", stride)
        self.top_k = min(check_int("top_k", top_k), len(self.names))
        self.min_confidence = check_range("min_confidence", min_confidence, 0.0, 1.0)
        self.min_hand_frames = check_int("min_hand_frames", min_hand_frames)
        self.fps = fps
        self.frame_count = 0
        self.segments = self.dropped = 0  # windows classified, and below min_confidence
        self._frames = collections.deque(maxlen=self.window)
        self._run = None  # [label, start, end, best top_k]

    def push(self, frame, time=None):
        self._frames.append(np.array(frame, np.float32))
        self.frame_count += 1
        if self.frame_count >= self.window and (self.frame_count - self.window) % self.stride == 0:
            return self._classify_window()
        return []

    def flush(self):
        signs = []
        if self.frame_count < self.window and self._frames:  # a stream shorter than a window
            signs = self._classify_window()
        return signs + self._end_run()

    def run(self, frames):
        for item in frames:
            frame, time = item if isinstance(item, tuple) else (item, None)
            yield from self.push(frame, time)
        yield from self.flush()

    def _classify_window(self):
        frames = np.stack(self._frames)
        end = self.frame_count - 1
        start = end - len(frames) + 1
        label = top = None
        if np.isfinite(frames[:, _HAND_ROWS, 0]).any(axis=1).sum() >= self.min_hand_frames:
            top = top_k_signs(self.classify(frames), self.names, self.top_k)
            self.segments += 1
            if top[0]["probability"] >= self.min_confidence:
                label = top[0]["label"]
            else:
                self.dropped += 1
        if self._run is not None and label == self._run[0]:
            self._run[2] = end
            if top[0]["probability"] > self._run[3][0]["probability"]:
                self._run[3] = top
            return []
        signs = self._end_run()
        if label is not None:
            self._run = [label, start, end, top]
        return signs

    def _end_run(self):
        if self._run is None:
            return []
        _, start, end, top = self._run
        self._run = None
        return [RecognizedSign(start, end, start / self.fps, end / self.fps, top, "window",
                               self.frame_count)]
