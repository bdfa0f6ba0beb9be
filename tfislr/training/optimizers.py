"""The recipe's optimizer (docs/recipe.md §13) and the distribution detail it needs.

AdamW, lr 3e-4 with 25 % linear warm-up then linear decay to 0, betas (0.9, 0.999),
eps 1e-8, decoupled weight decay 0.4, global-norm clipping at 10, one optimizer per
trained model (student, distilled).

Weight decay: the original decayed every parameter whose torch name did not contain
"bias" or "LayerNorm.weight" — so biases (of Dense, conv, LayerNorm and BatchNorm,
which torch calls `bias`) and the DeBERTa LayerNorm scales are not decayed, while
embeddings, relative-position tables, conv kernels, BatchNorm scales and the two input
LayerNorm scales (type / landmark embedding norms, which torch named `type_norm` /
`landmark_norm`, so the pattern missed them) are. `weight_decay_exclusions` selects the
same set by Keras variable path and the tests check it variable by variable.

Clipping under distribution: Keras clips the gradients inside `apply`, *before* it sums
them across replicas, so with N replicas it would clip N partial gradients instead of
the global one. The train step therefore sums the gradients itself (one all-reduce),
clips the true global gradient and hands it to an optimizer that skips its own
all-reduce (`PreReducedAdamW`, `PreReducedSGD`). Keras 3 dropped the old
`experimental_aggregate_gradients=False` switch; `_PreReduced` restores it.

One XLA island per update: Keras' TensorFlow optimizers update each variable with ~15
small ops (weight decay, moments, bias correction, step), ~1,400 ops a step for the
student's 95 variables. On one device, in a train step (`xla_fusion.islands()`),
`PreReducedAdamW` computes the same arithmetic for all its variables in one XLA-compiled
function and assigns the results (`tfislr.model.xla_fusion`; about twice as fast for the
len80 student, `python benchmarks/optimizer_update.py`, benchmarks/README.md). Under several
replicas, in eager calls, and with `TFISLR_XLA_FUSION=0` it is Keras' own update.
"""

import functools
import re

import keras
from keras import ops

from tfislr.model import xla_fusion
from tfislr.training.schedules import WarmupLinearDecay

# Variable names (the last path component) that torch called "bias".
_BIAS_NAMES = ("bias", "beta")
# A LayerNormalization scale ("gamma") inside the transformer. The input embedding norms
# (`type_norm`, `landmark_norm`) live outside the encoder and stay decayed.
TRANSFORMER_NORM_PATTERN = re.compile(r"(^|/)deberta[^/]*/(.*/)?[^/]*norm[^/]*/gamma$", re.IGNORECASE)


def _check_private_hook():
    if not hasattr(keras.optimizers.Optimizer, "_all_reduce_sum_gradients"):
        raise ImportError(
            "tfislr needs keras' TF optimizer hook `_all_reduce_sum_gradients` (Keras 3 with "
            f"the TensorFlow backend); keras {keras.__version__} does not have it, so "
            "gradients could be summed twice across replicas. Pin keras to the version in "
            "requirements.txt."
        )


class _PreReduced:
    """Mixin: the optimizer receives gradients already summed over replicas (and clipped)."""

    gradients_pre_reduced = True

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


def _adamw_values(values, momentums, velocities, gradients, learning_rate, local_step, *,
                  decayed, beta_1, beta_2, epsilon, weight_decay):
    """Keras AdamW's arithmetic (decoupled decay, then Adam) on values: new (x, m, v) each.

    Args:
        values, momentums, velocities, gradients: lists of float tensors, one per variable.
        learning_rate, local_step: float32 scalars (the step is 1-based).
        decayed: a tuple of bools, whether each variable gets weight decay.
    """
    dtype = learning_rate.dtype
    alpha = learning_rate * ops.sqrt(1 - ops.power(ops.cast(beta_2, dtype), local_step)) / (
        1 - ops.power(ops.cast(beta_1, dtype), local_step))
    updated = []
    for x, m, v, g, decay in zip(values, momentums, velocities, gradients, decayed):
        g = ops.cast(g, x.dtype)
        if decay:
            x = x - x * ops.cast(weight_decay, x.dtype) * ops.cast(learning_rate, x.dtype)
        m = m + (g - m) * (1 - beta_1)
        v = v + (ops.square(g) - v) * (1 - beta_2)
        x = x - (m * ops.cast(alpha, x.dtype)) / (ops.sqrt(v) + epsilon)
        updated.append((x, m, v))
    return updated


@keras.saving.register_keras_serializable(package="tfislr")
class PreReducedAdamW(_PreReduced, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` that expects gradients already all-reduced by the caller.

    On one device inside a train step, weight decay and Adam run as one XLA island for
    all variables (module docstring); the values are Keras AdamW's.
    """

    def _fused(self):
        # The same answer in `_apply_weight_decay` and `_backend_update_step`, which Keras
        # calls in turn: the fused update decays, so both must agree. (Sparse gradients
        # are made dense by `xla_fusion.tensors`, as Keras' update does with its ops.)
        import tensorflow as tf

        return not self.amsgrad and xla_fusion.enabled() and not tf.distribute.has_strategy()

    def _apply_weight_decay(self, variables):
        if not self._fused():  # else the fused update decays
            super()._apply_weight_decay(variables)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not self._fused():
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        slots = [self._get_variable_index(v) for v in trainable_variables]
        momentums = [self._momentums[i] for i in slots]
        velocities = [self._velocities[i] for i in slots]
        decayed = tuple(
            self.weight_decay is not None and self._use_weight_decay(v)
            for v in trainable_variables
        )
        update = xla_fusion.compiled(
            f"adamw/{self.beta_1!r}/{self.beta_2!r}/{self.epsilon!r}/{self.weight_decay!r}/"
            + "".join("1" if d else "0" for d in decayed),
            functools.partial(
                _adamw_values, decayed=decayed, beta_1=self.beta_1, beta_2=self.beta_2,
                epsilon=self.epsilon, weight_decay=self.weight_decay or 0.0,
            ),
        )
        as_tensors = xla_fusion.tensors
        updated = update(
            as_tensors(*trainable_variables), as_tensors(*momentums), as_tensors(*velocities),
            as_tensors(*grads), *as_tensors(
                ops.cast(learning_rate, "float32"), ops.cast(self.iterations + 1, "float32")),
        )
        for variable, m, v, (new_x, new_m, new_v) in zip(
            trainable_variables, momentums, velocities, updated
        ):
            variable.assign(new_x)
            m.assign(new_m)
            v.assign(new_v)


@keras.saving.register_keras_serializable(package="tfislr")
class PreReducedSGD(_PreReduced, keras.optimizers.SGD):
    """`keras.optimizers.SGD` that expects gradients already all-reduced by the caller."""


def is_pre_reduced(optimizer):
    """True when `optimizer` (or the optimizer a LossScaleOptimizer wraps) skips its all-reduce."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return bool(getattr(inner, "gradients_pre_reduced", False))


def is_bias_like(variable):
    """True for the variables torch called `bias` (Dense/conv bias, LayerNorm/BatchNorm beta)."""
    return variable.name in _BIAS_NAMES or variable.path.rsplit("/", 1)[-1] in _BIAS_NAMES


def is_transformer_norm_scale(variable, pattern=TRANSFORMER_NORM_PATTERN):
    """True for a LayerNorm scale inside the DeBERTa encoder (torch `LayerNorm.weight`)."""
    return pattern.search(variable.path) is not None


def weight_decay_exclusions(model, pattern=TRANSFORMER_NORM_PATTERN):
    """The trainable variables of `model` that get no weight decay (see the module docstring)."""
    return [
        v for v in model.trainable_variables
        if is_bias_like(v) or is_transformer_norm_scale(v, pattern)
    ]


def make_optimizer(train_config, total_steps, model, name, loss_scaling=None):
    """Builds the recipe's AdamW for `model`'s trainable variables.

    Args:
        train_config: `TrainConfig` (learning_rate, warmup_prop, beta_1, beta_2, epsilon,
            weight_decay; clipping is done by the train step with `max_grad_norm`).
        total_steps: optimizer steps of the whole run (the schedule's length).
        model: the Keras model whose trainable variables the optimizer updates.
        name: optimizer name ("student_adamw", ...); keeps the two optimizers' slots apart.
        loss_scaling: wrap in `keras.optimizers.LossScaleOptimizer` (default: when
            `train_config.precision` is mixed_float16; bfloat16 has float32's exponent range
            and needs no loss scaling).

    Returns:
        The built optimizer (its slots exist, so checkpoints restore into it).
    """
    _check_private_hook()
    warmup_steps = int(train_config.warmup_prop * total_steps)
    schedule = WarmupLinearDecay(train_config.learning_rate, total_steps, warmup_steps)
    optimizer = PreReducedAdamW(
        learning_rate=schedule,
        weight_decay=train_config.weight_decay,
        beta_1=train_config.beta_1,
        beta_2=train_config.beta_2,
        epsilon=train_config.epsilon,
        name=name,
    )
    optimizer.exclude_from_weight_decay(var_list=weight_decay_exclusions(model))
    if loss_scaling is None:
        loss_scaling = train_config.precision == "mixed_float16"
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_loss_scale")
    optimizer.build(model.trainable_variables)
    return optimizer
