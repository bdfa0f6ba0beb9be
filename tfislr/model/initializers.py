"""torch's default initializers, which the original's bare modules kept (docs/recipe.md §6)."""

import math

import keras


def torch_linear_kernel_initializer():
    """torch.nn.Linear / Conv default kernel init: U(±1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(
        scale=1.0 / 3.0, mode="fan_in", distribution="uniform"
    )


def torch_linear_bias_initializer(fan_in):
    """torch.nn.Linear default bias init: U(±1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)

