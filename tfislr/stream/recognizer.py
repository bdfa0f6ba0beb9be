"""Segments of a stream → recognized signs, frame by frame, in bounded memory.

`StreamRecognizer` pushes each frame through a `Segmenter` and classifies each segment it
closes as one clip, through the contract `tfislr-predict` uses: `classify` maps raw frames
float32 `[T, 543, 3]` to probabilities `[num_classes]` (a `tfislr.export.TFLiteRunner`,
whose graph holds the model's `Preprocess`). Then:

* **refine** (optional): the segment's boundaries are tried trimmed, by 0, 1/8 and 1/4 of
  its length at each end (9 windows, the segment itself among them), and the window the
  model is most confident about (highest top-1 probability) is kept, its frames as the
  sign's boundaries: a segment cut with some of the transition around the sign often reads
  better without it.
* **min_confidence**: a sign whose top-1 probability is below it is not emitted (counted
  in `dropped`); 0 emits every segment. Its default suits the demo model; a model that is
  more (or less) sure of itself wants another.
* **merge_gap**: consecutive segments with the same top-1 sign, at most `merge_gap` frames
  apart, are one sign (a sign cut in two by a dropout or a slow moment, as the baseline
  merges equal windows); its line waits until no later segment can join it: `merge_gap`
  frames after its end with no segment open, or the next segment's answer. A sign really
  repeated with so short a gap is reported once; 0 merges only adjacent segments.

A `RecognizedSign` carries its frames (`start_frame`, `end_frame`, inclusive), seconds
(the frames' times when the source gave them, else frame / `fps`), the top k signs and
`emitted_at`, the number of frames pushed when it was recognized (what its delay is
measured from).
"""

import dataclasses

import numpy as np

from tfislr.checks import check_int, check_range
from tfislr.stream.segmentation import Segmenter

# Chosen with the segmentation defaults (docs/stream.md): frames, and a probability that
# depends on how confident the model is (the demo model's answers top out near 0.7).
MERGE_GAP, MIN_CONFIDENCE = 30, 0.4
# Refinement trims each end by these fractions of the segment's length.
REFINE_TRIMS = (0.0, 0.125, 0.25)


@dataclasses.dataclass
class RecognizedSign:
    """One line of the timeline. `top_k`: `[{"sign", "label", "probability"}]`, best first."""

    start_frame: int
    end_frame: int
    start_seconds: float
    end_seconds: float
    top_k: list
    reason: str
    emitted_at: int

    @property
    def sign(self):
        return self.top_k[0]["sign"]

    @property
    def probability(self):
        return self.top_k[0]["probability"]

    def as_dict(self):
        return dataclasses.asdict(self)


def top_k_signs(probabilities, names, k):
    """`[{"sign", "label", "probability"}]` of the `k` most probable classes, best first
    (ties in label order)."""
    probabilities = np.asarray(probabilities, np.float64)
    ranked = np.argsort(-probabilities, kind="stable")[:k]
    return [{"sign": names[i], "label": int(i), "probability": float(probabilities[i])}
            for i in ranked]


def refine_window(classify, frames, min_frames=1):
    """`(first, last, probabilities)`: the window of `frames` `[n, 543, 3]` (trimmed by
    `REFINE_TRIMS` of n at each end, at least `min_frames` long) with the highest top-1
    probability; `first`, `last` are indices into `frames`, inclusive. The untrimmed window
    wins ties."""
    n = len(frames)
    trims = sorted({int(round(n * fraction)) for fraction in REFINE_TRIMS})
    best = None
    for head in trims:
        for tail in trims:
            if n - head - tail < min_frames:
                continue
            probabilities = np.asarray(classify(frames[head:n - tail]))
            if best is None or probabilities.max() > best[2].max():
                best = (head, n - tail - 1, probabilities)
    return best


class StreamRecognizer:
    """Frames in, recognized signs out (see the module docstring).

    Args:
        classify: raw frames float32 `[T, 543, 3]` → probabilities `[num_classes]`.
        names: the sign names by label.
        params: `SegmentationParams` (None: the defaults).
        top_k: signs listed per line.
        min_confidence: in [0, 1]; lower top-1 probabilities are not emitted.
        refine: trim each segment to the window the model is most confident about.
        fps: frames a second, for the seconds of frames pushed without a time.
        merge_gap: frames between two segments of the same sign that are merged.

    `push(frame, time=None)` returns the signs recognized at this frame (a list, usually
    empty); `flush()` those of the end of the stream; `run(frames)` does both over an
    iterable of frames or `(frame, time)` pairs and yields each sign as it is recognized.
    """

    def __init__(self, classify, names, params=None, top_k=3, min_confidence=MIN_CONFIDENCE,
                 refine=False, fps=30.0, merge_gap=MERGE_GAP):
        self.classify = classify
        self.names = list(names)
        self.segmenter = Segmenter(params)
        self.top_k = min(check_int("top_k", top_k), len(self.names))
        self.min_confidence = check_range("min_confidence", min_confidence, 0.0, 1.0)
        self.refine = bool(refine)
        self.fps = check_range("fps", fps, 0.0, None, low_open=True)
        self.merge_gap = check_int("merge_gap", merge_gap, minimum=0)
        self.dropped = 0  # segments below min_confidence
        self.segments = 0  # segments classified
        self._pending = None  # the last sign, while a later segment may still join it

    @property
    def frame_count(self):
        return self.segmenter.frame_count

    def push(self, frame, time=None):
        return self._merge(self._recognize(self.segmenter.push(frame, time)))

    def flush(self):
        return self._merge(self._recognize(self.segmenter.flush()), final=True)

    def run(self, frames):
        for item in frames:
            frame, time = item if isinstance(item, tuple) else (item, None)
            yield from self.push(frame, time)
        yield from self.flush()

    def _seconds(self, index, time):
        return float(time) if time is not None else index / self.fps

    def _recognize(self, segments):
        signs = []
        for segment in segments:
            self.segments += 1
            first, last = 0, len(segment.frames) - 1
            if self.refine:
                first, last, probabilities = refine_window(
                    self.classify, segment.frames, self.segmenter.params.min_frames)
            else:
                probabilities = self.classify(segment.frames)
            top = top_k_signs(probabilities, self.names, self.top_k)
            if top[0]["probability"] < self.min_confidence:
                self.dropped += 1
                continue
            start, end = segment.start + first, segment.start + last
            signs.append(RecognizedSign(start, end, self._seconds(start, segment.times[first]),
                                        self._seconds(end, segment.times[last]), top,
                                        segment.reason, segment.emitted_at))
        return signs

    def _merge(self, signs, final=False):
        """The signs that can no longer be merged with a later one (see `merge_gap`)."""
        out = []
        for sign in signs:
            pending = self._pending
            if (pending is not None and sign.top_k[0]["label"] == pending.top_k[0]["label"]
                    and sign.start_frame - pending.end_frame - 1 <= self.merge_gap):
                pending.end_frame, pending.end_seconds = sign.end_frame, sign.end_seconds
                pending.reason = sign.reason
                if sign.probability > pending.probability:
                    pending.top_k = sign.top_k
                continue
            if pending is not None:
                out.append(pending)
            self._pending = sign
        pending = self._pending
        if pending is not None:
            opened = self.segmenter.open_start
            last = self.frame_count - 1 if opened is None else opened
            if final or last - pending.end_frame - 1 > self.merge_gap:
                out.append(pending)
                self._pending = None
        for sign in out:
            sign.emitted_at = self.frame_count
        return out
