"""Training losses (docs/recipe.md §11): smoothed soft-target CE with OUSM, consistency.

All functions return *per-replica* values: means over the batch this replica sees.
They are raw reductions, not `keras.losses.Loss` objects, so Keras does not rescale
them under a distribution strategy; `scale_for_replicas` does it once, in the train step,
right before the gradient. Summing the per-replica gradients of `loss / N` over N
replicas then gives the gradient of the mean of the per-replica losses (for equal
per-replica batches: the global-batch mean, which is what one device would compute).
"""

import tensorflow as tf
from keras import ops


def smooth_targets(targets, smoothing, num_classes=None):
    """t' = t(1 − ε) + (1 − t) ε / (C − 1), for (possibly mixed) targets `t` `[B, C]`.

    With a one-hot `t` the true class gets 1 − ε and every other class ε / (C − 1)
    (0.7 and 0.3 / 249 for the competition); rows that summed to 1 still do.
    """
    targets = ops.convert_to_tensor(targets, "float32")
    if num_classes is None:
        num_classes = targets.shape[-1]
    if num_classes is None or num_classes < 2:
        raise ValueError(f"label smoothing needs >= 2 classes, got {num_classes}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    return targets * (1.0 - smoothing) + (1.0 - targets) * (smoothing / (num_classes - 1))


def soft_target_cross_entropy(logits, targets, smoothing=0.3):
    """Per-sample cross-entropy `[B]` of logits `[B, C]` against smoothed soft targets `[B, C]`."""
    logits = ops.cast(logits, "float32")
    smoothed = smooth_targets(targets, smoothing, logits.shape[-1])
    return -ops.sum(smoothed * ops.log_softmax(logits, axis=-1), axis=-1)


def _mean(values):
    """Mean of all values, 0 for none (a replica's empty batch adds nothing, not NaN)."""
    return tf.math.divide_no_nan(tf.reduce_sum(values), tf.cast(tf.size(values), values.dtype))


def ousm_mean(per_sample_losses, k, group_size=None):
    """Mean of the per-sample losses `[B]` after dropping the `k` largest of each group (OUSM).

    Online Uncertainty Sample Mining: the k hardest clips are treated as probably
    mislabelled and ignored. The batch is cut into consecutive groups of `group_size`
    clips (None: one group, the whole batch) and each group drops its own k largest, as
    each GPU of the original dropped 3 of its 32 (docs/recipe.md §11); the result
    is the mean over every kept clip. `B` must be a multiple of `group_size`, which must
    exceed `k`. An empty batch gives 0. Gradients flow only into the kept clips.
    """
    losses = ops.cast(per_sample_losses, "float32")
    if k < 0:
        raise ValueError(f"ousm k must be >= 0, got {k}")
    if k == 0:
        return _mean(losses)
    if group_size is None:  # one group: the whole batch, keeping at least one clip
        batch = tf.shape(losses)[0]
        groups = tf.reshape(losses, [1, -1])
        keep = tf.maximum(batch - k, tf.minimum(batch, 1))
    else:
        if group_size <= k:
            raise ValueError(f"ousm group_size ({group_size}) must exceed k ({k})")
        static = losses.shape[0]
        if static is not None and static % group_size:
            raise ValueError(
                f"a batch of {static} clips is not a whole number of OUSM groups of {group_size}"
            )
        groups = tf.reshape(losses, [-1, group_size])
        keep = group_size - k
    # The smallest `keep` losses of a group are the largest `keep` of their negatives.
    kept = -tf.math.top_k(-groups, k=keep, sorted=False).values
    return _mean(kept)


def classification_loss(logits, targets, smoothing=0.3, ousm_k=3, group_size=None):
    """The recipe's classification loss: smoothed soft-target CE, OUSM mean (per group)."""
    return ousm_mean(soft_target_cross_entropy(logits, targets, smoothing), ousm_k, group_size)


def consistency_loss(student_logits, teacher_logits):
    """Mean over the batch of Σ_c (softmax(student) − softmax(teacher))², teacher stopped."""
    student = ops.softmax(ops.cast(student_logits, "float32"), axis=-1)
    teacher = ops.softmax(ops.stop_gradient(ops.cast(teacher_logits, "float32")), axis=-1)
    return _mean(ops.sum(ops.square(student - teacher), axis=-1))


def num_replicas():
    """Replicas of the strategy in scope (1 outside any strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_for_replicas(loss):
    """`loss / num_replicas`: the per-replica share of a loss before gradients are summed.

    Keras applies this itself only to `keras.losses.Loss` objects / `compute_loss`;
    the raw reductions of this module need it exactly once.
    """
    replicas = num_replicas()
    if replicas == 1:
        return loss
    return loss * ops.cast(1.0 / replicas, loss.dtype)


def mixed_targets(labels, num_classes, lam=None, permutation=None):
    """One-hot targets `[B, C]`, mixed λ·onehot(y) + (1 − λ)·onehot(y[perm]) when λ is given."""
    onehot = ops.one_hot(ops.cast(labels, "int32"), num_classes, dtype="float32")
    if lam is None:
        return onehot
    lam = ops.expand_dims(ops.cast(lam, "float32"), -1)
    return lam * onehot + (1.0 - lam) * ops.take(onehot, permutation, axis=0)


__all__ = [
    "classification_loss",
    "consistency_loss",
    "mixed_targets",
    "num_replicas",
    "ousm_mean",
    "scale_for_replicas",
    "smooth_targets",
    "soft_target_cross_entropy",
]
