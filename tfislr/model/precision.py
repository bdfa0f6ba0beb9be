"""Float32 copies of models trained under a mixed dtype policy (for export and checks).

A model trained under `mixed_float16`/`mixed_bfloat16` keeps float32 variables but computes
in half precision, and its saved config records that policy on every layer, so loading it
rebuilds a half-precision graph. TFLite's builtin kernels take float32 activations (e.g.
`tfl.broadcast_to` refuses f16), and the exported contract is float32 anyway; the weights
themselves are float32 under every policy, so a float32 rebuild with the same weights is the
same model computed in full precision.
"""

import keras

FLOAT32 = "float32"


def _with_float32_policies(serialized):
    """The serialized model with every dtype policy replaced by float32 (a new structure)."""
    if isinstance(serialized, list):
        return [_with_float32_policies(item) for item in serialized]
    if not isinstance(serialized, dict):
        return serialized
    if "DTypePolicy" in str(serialized.get("class_name", "")):
        # Policies of any kind (mixed, quantized maps) become the plain float32 policy.
        return {"module": "keras", "class_name": "DTypePolicy",
                "config": {"name": FLOAT32}, "registered_name": None}
    return {key: _with_float32_policies(value) for key, value in serialized.items()}


def uses_float32(model):
    """True when the model and every layer in it compute in float32."""
    layers = [model, *model._flatten_layers(include_self=False)]
    return all(layer.dtype_policy.compute_dtype == FLOAT32 for layer in layers)


def float32_model(model):
    """`model` itself when it computes in float32, else a float32 rebuild with its weights.

    Args:
        model: a built, serializable Keras model (e.g. a loaded `ISLRClassifier`).

    Returns:
        A model whose every layer has the float32 policy and whose weights equal `model`'s
        (variables are float32 under mixed policies, so the copy is exact).

    Raises:
        ValueError: the rebuilt model's weights do not line up with the original's.
    """
    if uses_float32(model):
        return model
    serialized = _with_float32_policies(keras.saving.serialize_keras_object(model))
    copy = keras.saving.deserialize_keras_object(serialized)
    source, target = model.weights, copy.weights
    shapes = [tuple(v.shape) for v in source], [tuple(v.shape) for v in target]
    if shapes[0] != shapes[1]:
        raise ValueError(
            f"float32 rebuild of '{model.name}' has {len(target)} weights, the original "
            f"{len(source)} (or their shapes differ): the model's config does not rebuild it"
        )
    for variable, value in zip(target, source):
        variable.assign(keras.ops.cast(value, variable.dtype))
    return copy


__all__ = ["float32_model", "uses_float32"]
