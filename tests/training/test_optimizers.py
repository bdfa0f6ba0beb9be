"""The recipe's optimizers (`tfislr.training.optimizers`): which variables get weight decay,
and the pre-reduced optimizers the mean-teacher step needs.

How the distiller wires its two optimizers is tested in test_mean_teacher.py.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tiny_models import small_real_model
from tfislr.config import load_config
from tfislr.model import modes
from tfislr.model import build_classifier
from tfislr.training.optimizers import (
    PreReducedAdamW,
    PreReducedSGD,
    is_pre_reduced,
    is_transformer_norm_scale,
    make_optimizer,
    weight_decay_exclusions,
)


def test_is_pre_reduced_sees_through_loss_scaling():
    """The distiller sums gradients over replicas itself: only these optimizers may skip it."""
    for optimizer in (PreReducedAdamW(), PreReducedSGD()):
        assert is_pre_reduced(optimizer)
        assert is_pre_reduced(keras.optimizers.LossScaleOptimizer(optimizer))
    for optimizer in (keras.optimizers.AdamW(), keras.optimizers.SGD()):
        assert not is_pre_reduced(optimizer)
        assert not is_pre_reduced(keras.optimizers.LossScaleOptimizer(optimizer))


def test_weight_decay_exclusions_follow_the_original_rule():
    model = build_classifier(load_config("len80").model, 250, 80, distilled=True)
    excluded = {v.path for v in weight_decay_exclusions(model)}
    paths = {v.path for v in model.trainable_variables}
    assert excluded < paths
    for path in paths:
        name = path.split("/")[-1]
        deberta_norm = any(n in path for n in ("rel_embeddings_norm", "attention_norm", "output_norm"))
        should_exclude = name in ("bias", "beta") or (name == "gamma" and deberta_norm)
        assert (path in excluded) == should_exclude, path
    # decayed, as in the original: BN gammas, the input id norms, tables, kernels
    assert any("type_norm/gamma" in p for p in paths - excluded)
    assert any("batch_norm/gamma" in p for p in paths - excluded)
    assert any(p.endswith("rel_embeddings") for p in paths - excluded)
    excluded_params = sum(int(np.prod(v.shape)) for v in weight_decay_exclusions(model))
    # biases/betas of every layer + 3 LN gammas per DeBERTa layer: a small share
    assert 0 < excluded_params < 0.01 * model.count_params()


def test_weight_decay_sets_of_the_real_model():
    """Decayed: embeddings, rel tables, conv kernels, BN and input-LN gammas; not: biases, DeBERTa LN gammas."""
    config, model = small_real_model()
    excluded = {v.path for v in weight_decay_exclusions(model)}
    for v in model.trainable_variables:
        name = v.path.rsplit("/", 1)[-1]
        if name in ("bias", "beta"):
            assert v.path in excluded, v.path
        elif name == "gamma":
            in_transformer = is_transformer_norm_scale(v)
            assert (v.path in excluded) == in_transformer, v.path
        else:
            assert v.path not in excluded, v.path
    transformer_gammas = [v.path for v in model.trainable_variables if is_transformer_norm_scale(v)]
    # Three layers, each: attention LayerNorm, output LayerNorm, relative-embedding LayerNorm.
    assert len(transformer_gammas) == 9, transformer_gammas
    input_gammas = [v.path for v in model.trainable_variables
                    if v.path.endswith(("type_norm/gamma", "landmark_norm/gamma"))]
    assert len(input_gammas) == 2 and not set(input_gammas) & excluded, input_gammas
    optimizer = make_optimizer(config.train, 10, model, "adamw_test")
    decayed = {v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)}
    assert decayed == {v.path for v in model.trainable_variables} - excluded
    assert any("embedding" in p for p in decayed)


def _xla_compiled_names(function, *args):
    graph_def = function.get_concrete_function(*args).graph.as_graph_def()
    return [f.signature.name for f in graph_def.library.function if f.attr["_XlaMustCompile"].b]


def test_adamw_is_keras_own_update_under_several_replicas():
    """Under a strategy Keras' per-variable `extended.update` runs (no XLA-compiled
    function); values are tested equal across replica counts in test_strategy.py."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        variables = [keras.Variable(np.ones((3, 2), "float32"), name="kernel")]
        optimizer = PreReducedAdamW(learning_rate=1e-2, weight_decay=0.4)
        optimizer.build(variables)

    @tf.function
    def apply(grad):
        strategy.run(lambda g: optimizer.apply([g], variables), args=(grad,))

    assert _xla_compiled_names(apply, tf.ones((3, 2))) == []
