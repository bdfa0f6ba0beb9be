"""Schedules (lr, consistency ramp-up, EMA decay, mixup probability) and mixup draws."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfislr.training import schedules


def test_warmup_then_linear_decay_to_zero():
    schedule = schedules.WarmupLinearDecay(3e-4, total_steps=1000, warmup_steps=250)
    lr = lambda step: float(schedule(step))  # noqa: E731
    assert lr(0) == 0.0  # torch's scheduler gives the first update lr 0 as well
    assert lr(125) == pytest.approx(1.5e-4)
    assert lr(250) == pytest.approx(3e-4)
    assert lr(625) == pytest.approx(1.5e-4)
    assert lr(1000) == 0.0
    assert lr(5000) == 0.0
    values = [lr(s) for s in range(0, 1001, 50)]
    assert max(values) == pytest.approx(3e-4)


def test_schedule_round_trips_and_drives_an_optimizer():
    schedule = schedules.WarmupLinearDecay(1e-3, total_steps=10, warmup_steps=2)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert clone.get_config() == schedule.get_config()
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    variable = keras.Variable(1.0)
    optimizer.build([variable])
    for expected in [0.0, 5e-4, 1e-3]:
        assert float(optimizer.learning_rate) == pytest.approx(expected)
        optimizer.apply([tf.constant(0.0)], [variable])


def test_schedule_rejects_bad_lengths():
    with pytest.raises(ValueError):
        schedules.WarmupLinearDecay(1e-3, total_steps=0, warmup_steps=0)
    with pytest.raises(ValueError):
        schedules.WarmupLinearDecay(1e-3, total_steps=10, warmup_steps=11)


def test_consistency_ramp_up():
    assert schedules.rampup_steps(36900) == 9225
    w = lambda s: float(schedules.consistency_weight(s, 100, 5.0))  # noqa: E731
    assert w(0) == pytest.approx(5 * math.exp(-5))
    assert w(50) == pytest.approx(5 * math.exp(-1.25))
    assert w(100) == pytest.approx(5.0)
    assert w(1000) == pytest.approx(5.0)
    assert float(schedules.consistency_weight(3, 0, 5.0)) == 5.0


def test_ema_decay_counts_steps_from_one():
    decay = lambda s: float(schedules.ema_decay(s, 0.97))  # noqa: E731
    assert decay(1) == pytest.approx(0.5)
    assert decay(2) == pytest.approx(2 / 3)
    assert decay(32) == pytest.approx(1 - 1 / 33)  # 0.9697, still below the cap
    assert decay(33) == pytest.approx(0.97)  # 1 - 1/34 = 0.9706 is capped
    assert decay(10_000) == pytest.approx(0.97)
