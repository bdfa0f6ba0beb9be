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
`experimental_aggregate_gradients=False` switch; `keras_adapter.PreReducedGradients`
restores it.
"""

import re

import keras

from tfislr.training import keras_adapter
from tfislr.training.schedules import WarmupLinearDecay

# Variable names (the last path component) that torch called "bias".
_BIAS_NAMES = ("bias", "beta")
# A LayerNormalization scale ("gamma") inside the transformer. The input embedding norms
# (`type_norm`, `landmark_norm`) live outside the encoder and stay decayed.
TRANSFORMER_NORM_PATTERN = re.compile(r"(^|/)deberta[^/]*/(.*/)?[^/]*norm[^/]*/gamma$", re.IGNORECASE)


@keras.saving.register_keras_serializable(package="tfislr")
class PreReducedAdamW(keras_adapter.PreReducedGradients, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` that expects gradients already all-reduced by the caller."""


@keras.saving.register_keras_serializable(package="tfislr")
class PreReducedSGD(keras_adapter.PreReducedGradients, keras.optimizers.SGD):
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


def make_optimizer(train_config, total_steps, model, name, precision="float32"):
    """Builds the recipe's AdamW for `model`'s trainable variables.

    Args:
        train_config: `TrainConfig` (learning_rate, warmup_prop, beta_1, beta_2, epsilon,
            weight_decay; clipping is done by the train step with `max_grad_norm`).
        total_steps: optimizer steps of the whole run (the schedule's length).
        model: the Keras model whose trainable variables the optimizer updates.
        name: optimizer name ("student_adamw", ...); keeps the two optimizers' slots apart.
        precision: the run's `runtime.precision`; mixed_float16 wraps the optimizer in
            `keras.optimizers.LossScaleOptimizer` (bfloat16 has float32's exponent range and
            needs no loss scaling).

    Returns:
        The built optimizer (its slots exist, so checkpoints restore into it).
    """
    keras_adapter.PreReducedGradients.check_hook()
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
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_loss_scale")
    optimizer.build(model.trainable_variables)
    return optimizer
