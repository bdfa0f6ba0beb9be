"""Step schedules of the recipe (docs/recipe.md §11–§13), graph-safe functions of the step.

- learning rate: linear warm-up over the first 25 % of the optimizer steps, then linear
  decay to 0 (`WarmupLinearDecay`, the shape of transformers' get_linear_schedule_with_warmup);
- consistency weight: sigmoid ramp-up w = 5·exp(−5(1 − s/R)²), s = min(step, R),
  R = int(0.25 · total_steps);
- EMA decay of the mean teacher: α = min(1 − 1/(step + 1), 0.97), step counted from 1.

Epoch-based rules (augmentation phase, distilled-model mode, mixup probability) live in
`tfislr.timeline`.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfislr")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = peak·step/warmup for step < warmup, then peak·(total − step)/(total − warmup).

    `step` is the optimizer's 0-based iteration counter, so the very first update uses
    lr 0, as torch's scheduler did. The rate is 0 from `total_steps` on.

    Args:
        learning_rate: peak learning rate (3e-4 in the recipe).
        total_steps: number of optimizer steps of the whole run.
        warmup_steps: steps of the linear warm-up (int(warmup_prop · total_steps)).
    """

    def __init__(self, learning_rate, total_steps, warmup_steps, name="warmup_linear_decay"):
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}"
            )
        self.learning_rate = float(learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = ops.cast(self.learning_rate, "float32")
        warmup = ops.cast(max(self.warmup_steps, 1), "float32")
        decay_span = ops.cast(max(self.total_steps - self.warmup_steps, 1), "float32")
        rising = peak * step / warmup
        falling = peak * ops.maximum(ops.cast(self.total_steps, "float32") - step, 0.0) / decay_span
        return ops.where(step < ops.cast(self.warmup_steps, "float32"), rising, falling)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "name": self.name,
        }


def rampup_steps(total_steps, rampup_prop=0.25):
    """R = int(rampup_prop · total_steps), the step at which the consistency weight peaks."""
    return int(rampup_prop * total_steps)


def consistency_weight(step, rampup_length, max_weight=5.0):
    """Sigmoid ramp-up: max_weight · exp(−5 (1 − s/R)²), s = min(step, R); max_weight if R = 0."""
    if rampup_length <= 0:
        return ops.cast(max_weight, "float32")
    s = ops.minimum(ops.cast(step, "float32"), float(rampup_length))
    phase = 1.0 - s / float(rampup_length)
    return max_weight * ops.exp(-5.0 * phase * phase)


def ema_decay(step, max_decay=0.97):
    """α = min(1 − 1/(step + 1), max_decay) with `step` counted from 1 (α = 0.5 at step 1)."""
    step = ops.cast(step, "float32")
    return ops.minimum(1.0 - 1.0 / (step + 1.0), max_decay)
