"""Landmark frames, one at a time → candidate sign segments.

A sign is made with the hands up in the signing space and moving; between signs the hands
rest (drop out of the signing space, or out of the picture) or hold still for a moment.
`Segmenter` follows that frame by frame, from the raw MediaPipe frame `[543, 3]` alone:

* **Active hand**: a wrist (left or right hand row 0) detected and above the bottom of the
  signing space, `signing_space` shoulder widths below the shoulders (pose 11 and 12, the
  last ones seen; the hips of a seated or standing signer lie about 1.2 below). Without a
  pose yet, any detected hand is active.
* **Speed**: the wrists' displacement over the last `speed_window` frames, in shoulder
  widths a frame (the faster hand; MediaPipe's jitter is averaged out over the window).
  A hand that just appeared has no speed yet.
* **A segment opens** at the first active frame after a rest, or, after a pause, at the
  first frame moving at `pause_speed` or more (with the `speed_window` frames before it,
  where that motion began).
* **It closes** when
  - no hand is active for `gap_frames` frames (a rest; it ends at the last active frame),
  - the hands stay under `pause_speed` for `pause_frames` frames once the segment holds
    `min_motion_frames` moving frames (a pause; it ends where the stillness began): a shorter
    motion before a pause is the move into the next sign, kept as its lead-in, as the
    isolated clips begin with the hands moving into place;
  - it reaches `max_frames` frames (the next frame may open the next one), or
  - the stream ends (`flush`).
* A segment with fewer than `min_frames` active frames (a hand flickering into view) is
  dropped.

Frame numbers are 0-based positions in the stream (the count of frames pushed before).
Memory: the open segment's frames (at most `max_frames`) and the last `speed_window + 1`
wrist positions; a stream of any length runs in that.
"""

import collections
import dataclasses

import numpy as np

from tfislr import landmarks as lm
from tfislr.checks import check_int, check_range

_POSE_START = lm.PART_ROWS["pose"][0]
SHOULDER_ROWS = (_POSE_START + 11, _POSE_START + 12)
WRIST_ROWS = (lm.PART_ROWS["left_hand"][0], lm.PART_ROWS["right_hand"][0])
FRAME_SHAPE = (lm.NUM_RAW_LANDMARKS, lm.NUM_COORDINATES)


@dataclasses.dataclass(frozen=True)
class SegmentationParams:
    """What cuts a stream into segments (see the module docstring); frames, shoulder widths.

    The defaults were chosen on synthetic streams of signers not used to report the
    results (docs/stream.md, `benchmarks/stream.py --tune`).
    """

    signing_space: float = 1.2
    speed_window: int = 1
    pause_speed: float = 0.035
    pause_frames: int = 2
    min_motion_frames: int = 8
    gap_frames: int = 2
    min_frames: int = 1
    max_frames: int = 48

    def __post_init__(self):
        check_range("signing_space", self.signing_space, 0, None, low_open=True)
        check_range("pause_speed", self.pause_speed, 0, None)
        for name in ("speed_window", "pause_frames", "gap_frames", "min_frames", "max_frames"):
            check_int(name, getattr(self, name))
        check_int("min_motion_frames", self.min_motion_frames, minimum=0)
        if self.min_frames > self.max_frames:
            raise ValueError(f"min_frames ({self.min_frames}) must be <= max_frames "
                             f"({self.max_frames})")


@dataclasses.dataclass
class Segment:
    """A candidate sign: stream frames `start..end` (inclusive) and their raw landmarks.

    `frames`: float32 `[end - start + 1, 543, 3]`; `times`: each frame's seconds as pushed
    (None for a frame pushed without one); `reason`: what closed it (`rest`, `pause`,
    `max_frames`, `end`); `emitted_at`: the number of frames pushed when it closed (its
    delay in frames is `emitted_at - 1 - end`).
    """

    start: int
    end: int
    frames: np.ndarray
    times: list
    reason: str
    emitted_at: int


class Segmenter:
    """Push frames one at a time, get the segments as they close (see the module docstring).

    Args:
        params: a `SegmentationParams`.

    `push(frame, time=None)` takes one raw frame `[543, 3]` (NaN where MediaPipe saw
    nothing) and an optional time in seconds, and returns the segments it closed (a list,
    usually empty); `flush()` closes the open one at the end of the stream.

    Raises:
        ValueError: a frame of another shape.
    """

    def __init__(self, params=None):
        self.params = SegmentationParams() if params is None else params
        self.frame_count = 0
        p = self.params
        self._wrists = collections.deque(maxlen=p.speed_window + 1)  # [2, 2] xy, NaN = none
        self._recent = collections.deque(maxlen=p.speed_window)  # (frame, time, active)
        self._shoulder_y = None
        self._scale = None  # shoulder width, image units
        self._holding = False  # hands up and still after a pause: wait for motion
        self._idle = 0  # frames without an active hand outside a segment
        self._reset_segment()

    def _reset_segment(self):
        self._start = None
        self._frames, self._times = [], []
        self._active_count = 0
        self._last_active = None
        self._inactive = self._still = self._motion = 0

    @property
    def open_start(self):
        """The first frame of the open segment, or None when none is open."""
        return self._start

    @property
    def buffered_frames(self):
        """Frames held now (the open segment and the look-back): at most `max_frames +
        speed_window`, whatever the stream's length."""
        return len(self._frames) + len(self._recent)

    def _body(self, frame):
        shoulders = frame[list(SHOULDER_ROWS), :2]
        if np.isfinite(shoulders).all():
            width = float(abs(shoulders[0, 0] - shoulders[1, 0]))
            if width > 0:
                self._scale = width
                self._shoulder_y = float(shoulders[:, 1].mean())

    def _active_wrists(self, frame):
        wrists = frame[list(WRIST_ROWS), :2].astype(np.float64)
        present = np.isfinite(wrists).all(axis=1)
        if self._shoulder_y is not None:
            bottom = self._shoulder_y + self.params.signing_space * self._scale
            present &= wrists[:, 1] < bottom
        wrists[~present] = np.nan
        return wrists

    def _speed(self):
        """Shoulder widths a frame of the faster active hand over the window, NaN if none
        was active both now and at some earlier frame of the window."""
        now = self._wrists[-1]
        speeds = []
        for hand in range(2):
            if np.isnan(now[hand, 0]):
                continue
            for lag in range(len(self._wrists) - 1, 0, -1):  # the oldest position first
                before = self._wrists[-1 - lag][hand]
                if not np.isnan(before[0]):
                    speeds.append(np.hypot(*(now[hand] - before)) / lag)
                    break
        if not speeds:
            return np.nan
        return max(speeds) / (self._scale or 1.0)

    def push(self, frame, time=None):
        frame = np.array(frame, np.float32)  # a copy: the caller may reuse its buffer
        if frame.shape != FRAME_SHAPE:
            raise ValueError(f"a frame must have shape {list(FRAME_SHAPE)}, got {list(frame.shape)}")
        p = self.params
        index = self.frame_count
        self.frame_count += 1
        self._body(frame)
        wrists = self._active_wrists(frame)
        active = bool(np.isfinite(wrists[:, 0]).any())
        self._wrists.append(wrists)
        speed = self._speed()
        closed = []
        if self._start is None:
            self._idle = 0 if active else self._idle + 1
            if self._idle >= p.gap_frames:  # the hands went down: a rest, not a pause
                self._holding = False
            if active and not self._holding:
                self._open(index, [])
            elif active and speed >= p.pause_speed:  # motion resumes after a pause
                self._open(index - len(self._recent), list(self._recent))
        if self._start is not None:
            self._frames.append(frame)
            self._times.append(time)
            if active:
                self._active_count += 1
                self._last_active = index
                self._inactive = 0
            else:
                self._inactive += 1
            if speed < p.pause_speed:
                self._still += 1
            elif speed >= p.pause_speed:  # (a NaN speed, no hand to measure, is neither)
                self._still = 0
                self._motion += 1
            closed = self._maybe_close(index)
            self._recent.clear()
        else:
            self._recent.append((frame, time, active))
        return closed

    def _open(self, start, lookback):
        self._start = start
        for frame, time, active in lookback:
            self._frames.append(frame)
            self._times.append(time)
            self._active_count += active
        self._recent.clear()

    def _maybe_close(self, index):
        p = self.params
        if self._inactive >= p.gap_frames:
            self._holding = False
            return self._close(self._last_active, "rest")
        if self._still >= p.pause_frames and self._motion >= p.min_motion_frames:
            self._holding = True
            return self._close(index - self._still, "pause")
        if len(self._frames) >= p.max_frames:
            self._holding = False
            return self._close(index, "max_frames")
        return []

    def _close(self, end, reason):
        """Closes the open segment at stream frame `end`; returns it in a list, or [] when
        it has too few active frames."""
        keep = end - self._start + 1
        segment = None
        if keep > 0 and self._active_count >= self.params.min_frames:
            segment = Segment(self._start, end, np.stack(self._frames[:keep]),
                              self._times[:keep], reason, self.frame_count)
        self._reset_segment()
        return [] if segment is None else [segment]

    def flush(self):
        """Closes the open segment (the stream ended); returns it in a list, or []."""
        self._holding = False
        self._recent.clear()
        if self._start is None or self._last_active is None:
            self._reset_segment()
            return []
        return self._close(self._last_active, "end")
