"""When the recipe switches, by epoch: the one place for every epoch-based rule.

Epochs here are 0-based indices, as Keras passes them (`on_epoch_begin(epoch)`); the
original's logs count from 1, so its "epoch 50 of 100" is index 49 here. With E epochs
(docs/recipe.md §14):

| what                                   | from index (E = 100) | rule                                  |
| -------------------------------------- | -------------------- | ------------------------------------- |
| augmentation phase 2 (strength 2)      | 49 (its epoch 50)    | int(phase2_start · E) − 1             |
| distilled model in inference mode      | 50 (its epoch 51)    | ceil(E / 2)                           |
| mixup probability reaches 0            | 89 (its epoch 90)    | p = p0 · (1 − (e + 1) / (f · E)) ≤ 0  |

The first two are one epoch apart in the original too: it set augmentation strength 2 at
the start of its epoch E // 2 and switched the distilled model at its first validation
after half of the steps, i.e. after epoch E / 2. Both use the same half-way point `HALF`.
"""

import math

from keras import ops

HALF = 0.5


def augment_phase2_start(epochs, phase2_start=HALF):
    """Index of the first epoch of augmentation phase 2, or None if phase 2 never starts.

    The original used its epoch `min(50, E // 2)`; `int(phase2_start · E)` is the same for
    E <= 100 (its cap at 50 only mattered for longer runs). A start before the original's
    epoch 1 never switches, as the original's epoch 0 never came.
    """
    first = int(phase2_start * epochs)  # the original's 1-based epoch number
    return first - 1 if first >= 1 else None


def distilled_inference_start(epochs):
    """Index of the first epoch in which the distilled model trains with `training=False`.

    The original switched at its first validation at or after half of the steps: after
    epoch ceil(E / 2) (1-based), so from the next one on.
    """
    return math.ceil(epochs * HALF)


def mixup_probability(epoch, epochs, mix_proba=0.5, end_fraction=0.9):
    """p = mix_proba · (1 − (epoch + 1) / (end_fraction · epochs)), clipped at 0 (graph-safe).

    `epoch` is the 0-based index (an int or a tensor): ≈0.494 in the first epoch, 0.25 in
    the 45th and 0 from the 90th of 100, as the original ran. `end_fraction` ≤ 0 switches
    mixup off.
    """
    if end_fraction <= 0 or mix_proba <= 0:
        return ops.cast(0.0, "float32")
    done = ops.cast(epoch, "float32") + 1.0
    return ops.maximum(mix_proba * (1.0 - done / (end_fraction * epochs)), 0.0)
