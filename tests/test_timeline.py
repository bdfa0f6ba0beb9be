"""The recipe's epoch timeline: augmentation phase, distilled-model mode, mixup probability."""

import pytest

from tfislr import timeline


def test_mixup_probability_decreases_to_zero():
    # `e` counts from 1, as the original's logs do; the function takes the 0-based index.
    p = lambda e: float(timeline.mixup_probability(e - 1, 100, 0.5, 0.9))  # noqa: E731
    assert p(1) == pytest.approx(0.5 * (1 - 1 / 90))
    assert p(45) == pytest.approx(0.25)
    assert p(90) == 0.0
    assert p(100) == 0.0
    assert float(timeline.mixup_probability(0, 100, 0.0, 0.9)) == 0.0


def test_switches_keep_the_originals_epochs():
    # 100 epochs: strength 2 from the original's epoch 50, distilled in inference mode from
    # its epoch 51 (after the validation at half of the steps), mixup 0 from its epoch 90.
    assert timeline.augment_phase2_start(100) == 49
    assert timeline.distilled_inference_start(100) == 50
    assert float(timeline.mixup_probability(88, 100)) > 0.0 == float(timeline.mixup_probability(89, 100))
    # Odd epoch counts: the original's E // 2 and its first validation after E / 2 steps.
    assert timeline.augment_phase2_start(5) == 1 and timeline.distilled_inference_start(5) == 3
    assert timeline.augment_phase2_start(1) is None  # int(0.5) = 0: never
    assert timeline.augment_phase2_start(10, phase2_start=0.0) is None
    assert timeline.augment_phase2_start(10, phase2_start=1.0) == 9
