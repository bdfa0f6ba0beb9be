"""`TestCase`, the base of the layer and model tests (keras-hub's `TestCase.run_layer_test`).

`TestCase.run_layer_test` checks, for one layer (or model) and one small batch with padding:

1. it builds and gives finite outputs of the expected shape (eager, inference mode);
2. symbolic (functional `keras.Model`) and eager calls agree;
3. changing the values at padded frames changes no output at real frames, for every batch
   element, in inference mode and (when the layer promises it) in training mode;
4. variable T: extra padded frames change nothing; short (T=1) and long sequences run;
5. `get_config` round trip: JSON-serialisable, `from_config` gives the same config, and with
   the same weights the same outputs;
6. one `fit` step of a functional wrapper runs, the loss is finite and weights move;
7. `.keras` save / load of the wrapper gives identical outputs;
8. an empty batch (`run_empty_batch_test`; B = 0, as a replica gets from a last global
   batch smaller than the replica count): eager and graph calls in both modes give
   `[0, ...]` of the right trailing shape, the training gradient has every variable's
   shape, and no state (BatchNorm statistics, seed generators aside) changes or turns
   non-finite;
9. precision (keras-hub's check, `run_precision_test`): under `mixed_float16` and
   `mixed_bfloat16` every sublayer takes the policy, variables stay float32, outputs are
   finite and close to float32's;
10. the number of trainable weights (`expected_num_trainable_weights`).

Inputs are a flat dict of named numpy arrays; `apply(layer, batch, **call_kwargs)` maps it
to the layer call, so the same harness serves layers with different signatures and the
full classifier (whose input is itself a dict).
"""

import json

import keras
import numpy as np
import tensorflow as tf


# A small batch with padding for `run_layer_test`: B clips of T frames.
B, T = 3, 7
LENGTHS = (7, 4, 2)  # element 0 unpadded, the others padded


def padding_mask(lengths=LENGTHS, length=T):
    """`[len(lengths), length]` float32: 1 at the first `lengths[i]` frames of row i, else 0."""
    return (np.arange(length)[None, :] < np.array(lengths)[:, None]).astype("float32")


def random(*shape, seed=0):
    """Standard-normal float32 of `shape`, fixed by `seed`."""
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _set_time_length(array, length):
    """Pads with zeros or truncates axis 1 to `length`."""
    current = array.shape[1]
    if length <= current:
        return array[:, :length]
    pad = [(0, 0)] * array.ndim
    pad[1] = (0, length - current)
    return np.pad(array, pad)


def _real_frames(output, mask):
    """Output values at real frames only (zeros elsewhere) for per-frame outputs."""
    return np.where(mask.reshape(mask.shape + (1,) * (output.ndim - 2)) > 0, output, 0.0)


def _functional(layer, apply, batch, time_keys):
    inputs = {}
    for key, value in batch.items():
        shape = list(value.shape[1:])
        if key in time_keys:
            shape[0] = None
        inputs[key] = keras.Input(shape=tuple(shape), dtype=str(value.dtype), name=key)
    outputs = apply(layer, inputs)
    return keras.Model(inputs, outputs)


def _state(layer):
    """Non-trainable state except seed generators (whose counters advance by design)."""
    return {
        v.path: np.array(v) for v in layer.non_trainable_variables if "seed_generator" not in v.path
    }


class TestCase:
    """Base of the layer and model tests (keras-hub's `TestCase`): a test class derives from it
    and calls `self.run_layer_test(...)`. A plain pytest class, so test methods take fixtures
    (`tmp_path`) and `pytest.mark.parametrize` as functions do.
    """

    def run_layer_test(
        self,
        layer_cls,
        init_kwargs,
        batch,
        apply,
        *,
        expected_output_shape,
        mask_key="padding_mask",
        padded_keys=(),
        static_keys=(),
        per_frame_output=True,
        training_padding_invariant=True,
        deterministic_kwargs=None,
        long_length=None,
        tolerance=1e-5,
        tmp_path=None,
        run_fit=True,
        expected_num_trainable_weights=None,
        float32_output=False,
    ):
        """Runs every check; raises AssertionError with a message naming the failing check.

        Args:
            layer_cls: the layer (or model) class; built as `layer_cls(**init_kwargs)`.
            batch: dict name -> numpy array, every entry `[B, T, ...]` except `static_keys`
                (no time axis, e.g. a relative table). Must contain `batch[mask_key]` `[B, T]`
                with at least one padded frame and one unpadded batch element.
            apply: `apply(layer, batch_like, **call_kwargs) -> output tensor`.
            expected_output_shape: tuple for the given batch (use None for "any").
            padded_keys: inputs whose padded frames are perturbed in the padding checks.
            per_frame_output: output is `[B, T, ...]` (compare real frames only); otherwise the
                whole output is compared.
            training_padding_invariant: also check padding invariance with `training=True`,
                on a layer built with `deterministic_kwargs` (e.g. dropout 0).
            long_length: if set, also run a sequence of this length (e.g. > max_len).
            tmp_path: directory for the `.keras` file (pytest's tmp_path).
            expected_num_trainable_weights: int, checked when given.
            float32_output: the layer casts its output to float32 under any policy (the
                classifier's logits); otherwise the output has the policy's compute dtype.
        """
        rng = np.random.default_rng(0)
        time_keys = [key for key in batch if key not in static_keys]
        mask = batch[mask_key]
        assert (mask == 0).any() and (mask.min(axis=1) == 1).any(), "harness needs mixed padding"

        def compare(a, b, what, batch_mask=mask):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            if per_frame_output:
                a, b = _real_frames(a, batch_mask), _real_frames(b, batch_mask)
            for element in range(a.shape[0]):
                np.testing.assert_allclose(
                    a[element], b[element], rtol=tolerance, atol=tolerance,
                    err_msg=f"{layer_cls.__name__}: {what} (batch element {element})",
                )

        # 1. build + eager call
        layer = layer_cls(**init_kwargs)
        eager = keras.ops.convert_to_numpy(apply(layer, batch, training=False))
        if expected_output_shape is not None:
            assert eager.shape == tuple(expected_output_shape), (eager.shape, expected_output_shape)
        assert np.isfinite(eager).all(), f"{layer_cls.__name__}: non-finite eager output"
        assert layer.built

        # 2. symbolic == eager
        model = _functional(layer, apply, batch, time_keys)
        symbolic = keras.ops.convert_to_numpy(model(batch, training=False))
        np.testing.assert_allclose(symbolic, eager, rtol=tolerance, atol=tolerance,
                                   err_msg=f"{layer_cls.__name__}: symbolic != eager")

        # 3. padded values do not leak
        perturbed = dict(batch)
        for key in padded_keys:
            value = batch[key]
            noise = rng.normal(scale=50.0, size=value.shape).astype(value.dtype)
            frame_mask = mask.reshape(mask.shape + (1,) * (value.ndim - 2))
            perturbed[key] = np.where(frame_mask > 0, value, noise)
            assert not np.array_equal(perturbed[key], value)
        changed = keras.ops.convert_to_numpy(apply(layer, perturbed, training=False))
        compare(changed, eager, "padded values changed the output (inference)")
        if training_padding_invariant:
            deterministic = layer_cls(**{**init_kwargs, **(deterministic_kwargs or {})})
            first = keras.ops.convert_to_numpy(apply(deterministic, batch, training=True))
            second = keras.ops.convert_to_numpy(apply(deterministic, perturbed, training=True))
            assert np.isfinite(first).all()
            compare(second, first, "padded values changed the output (training)")

        # 4. variable T
        length = mask.shape[1]
        longer = {k: (_set_time_length(v, length + 3) if k in time_keys else v) for k, v in batch.items()}
        extended = keras.ops.convert_to_numpy(apply(layer, longer, training=False))
        if per_frame_output:
            extended = extended[:, :length]
        compare(extended, eager, "extra padded frames changed the output")
        other_lengths = [1] + ([long_length] if long_length else [])
        for other in other_lengths:
            resized = {}
            for key, value in batch.items():
                if key not in time_keys:
                    resized[key] = value
                elif key == mask_key:
                    resized[key] = np.ones((value.shape[0], other), value.dtype)
                else:
                    resized[key] = rng.normal(size=(value.shape[0], other) + value.shape[2:]).astype(
                        value.dtype
                    )
            out = keras.ops.convert_to_numpy(apply(layer, resized, training=False))
            assert np.isfinite(out).all(), f"{layer_cls.__name__}: non-finite output at T={other}"
            if per_frame_output:
                assert out.shape[1] == other, (out.shape, other)
            symbolic_out = keras.ops.convert_to_numpy(model(resized, training=False))
            np.testing.assert_allclose(symbolic_out, out, rtol=tolerance, atol=tolerance,
                                       err_msg=f"{layer_cls.__name__}: symbolic != eager at T={other}")

        # 5. config round trip
        config = layer.get_config()
        json.dumps(config)
        clone = layer_cls.from_config(config)
        assert clone.get_config() == config, "get_config round trip changed the config"
        apply(clone, batch, training=False)
        clone.set_weights(layer.get_weights())
        cloned = keras.ops.convert_to_numpy(apply(clone, batch, training=False))
        np.testing.assert_allclose(cloned, eager, rtol=tolerance, atol=tolerance,
                                   err_msg=f"{layer_cls.__name__}: from_config + weights differ")

        # 6. one fit step (on the clone's wrapper so `layer` keeps its weights)
        if run_fit:
            fit_model = _functional(clone, apply, batch, time_keys)
            fit_model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
            before = [np.array(v) for v in fit_model.trainable_variables]
            assert before, f"{layer_cls.__name__}: no trainable variables"
            target = np.zeros_like(eager) + 0.5
            data = tf.data.Dataset.from_tensors((batch, target))
            history = fit_model.fit(data, epochs=1, verbose=0, shuffle=False)
            loss = history.history["loss"][-1]
            assert np.isfinite(loss), f"{layer_cls.__name__}: fit loss {loss}"
            moved = [not np.array_equal(b, np.array(v)) for b, v in zip(before, fit_model.trainable_variables)]
            assert any(moved), f"{layer_cls.__name__}: fit did not change any weight"

        # 7. .keras save / load
        if tmp_path is not None:
            path = str(tmp_path / f"{layer_cls.__name__}.keras")
            model.save(path)
            restored = keras.saving.load_model(path)
            loaded = keras.ops.convert_to_numpy(restored(batch, training=False))
            np.testing.assert_allclose(loaded, eager, rtol=tolerance, atol=tolerance,
                                       err_msg=f"{layer_cls.__name__}: .keras save/load differs")
        # 8. empty batch
        self.run_empty_batch_test(layer_cls, layer, apply, batch, static_keys, eager.shape[1:])

        # 9. mixed precision
        for policy in ("mixed_float16", "mixed_bfloat16"):
            self.run_precision_test(layer_cls, {**init_kwargs, **(deterministic_kwargs or {})}, apply,
                             batch, policy, float32_output)

        # 10. trainable weights
        if expected_num_trainable_weights is not None:
            assert len(layer.trainable_weights) == expected_num_trainable_weights, (
                f"{layer_cls.__name__}: {len(layer.trainable_weights)} trainable weights, "
                f"expected {expected_num_trainable_weights}"
            )
        return layer


    def run_empty_batch_test(self, layer_cls, layer, apply, batch, static_keys, trailing_shape):
        """Check 8: `layer` called on `batch` cut to B = 0 (`static_keys` kept whole) gives
        `[0, *trailing_shape]` eagerly and in a graph, zero gradients and unchanged state."""
        name = layer_cls.__name__
        empty = {k: (v if k in static_keys else v[:0]) for k, v in batch.items()}
        expected = (0,) + tuple(trailing_shape)
        before = _state(layer)
        for training in (False, True):
            out = keras.ops.convert_to_numpy(apply(layer, empty, training=training))
            assert out.shape == expected, f"{name}: eager B=0 (training={training}) gave {out.shape}"

        variables = layer.trainable_variables
        # An unknown batch dimension, as inside a distributed step.
        signature = {k: tf.TensorSpec((None,) + v.shape[1:], v.dtype) for k, v in empty.items()}
        for training in (False, True):

            @tf.function(input_signature=[signature])
            def step(inputs):
                with tf.GradientTape() as tape:
                    out = apply(layer, inputs, training=training)
                    loss = tf.reduce_sum(tf.cast(out, tf.float32))
                return out, tape.gradient(loss, variables)

            out, gradients = step(empty)
            assert tuple(out.shape) == expected, f"{name}: graph B=0 (training={training}) gave {out.shape}"
            for variable, gradient in zip(variables, gradients):
                if gradient is not None:
                    gradient = tf.convert_to_tensor(gradient)
                    assert tuple(gradient.shape) == tuple(variable.shape), (name, variable.path)
                    assert not np.any(gradient.numpy()), f"{name}: B=0 gradient of {variable.path}"
        after = _state(layer)
        for path, value in before.items():
            np.testing.assert_array_equal(after[path], value,
                                          err_msg=f"{name}: a B=0 call changed {path}")


    def run_precision_test(self, layer_cls, init_kwargs, apply, batch, policy, float32_output):
        """Check 9 for one `policy` ("mixed_float16", "mixed_bfloat16"): every sublayer takes it,
        variables stay float32, the output is close to float32's (float32 itself when
        `float32_output`)."""
        name = layer_cls.__name__
        reference = layer_cls(**init_kwargs)
        expected = keras.ops.convert_to_numpy(apply(reference, batch, training=False))
        layer = layer_cls(**init_kwargs, dtype=policy)
        apply(layer, batch, training=False)
        layer.set_weights(reference.get_weights())
        out = apply(layer, batch, training=False)
        compute_dtype = keras.dtype_policies.get(policy).compute_dtype
        want = "float32" if float32_output else compute_dtype
        assert keras.backend.standardize_dtype(out.dtype) == want, (name, policy, out.dtype)
        for sublayer in layer._flatten_layers():
            assert sublayer.dtype_policy.name == policy, (
                f"{name} under {policy}: sublayer {sublayer.name} has {sublayer.dtype_policy.name}")
        for variable in layer.weights:
            if "float" in str(variable.dtype):
                assert keras.backend.standardize_dtype(variable.dtype) == "float32", (
                    f"{name} under {policy}: variable {variable.path} is {variable.dtype}")
        out = keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))
        assert np.isfinite(out).all(), f"{name} under {policy}: non-finite output"
        # Half precision keeps 8 (bfloat16) or 11 (float16) significant bits.
        scale = 1.0 + np.abs(expected).max()
        np.testing.assert_allclose(out, expected, atol=0.1 * scale,
                                   err_msg=f"{name} under {policy}: far from float32")
