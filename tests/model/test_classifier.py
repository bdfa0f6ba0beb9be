"""ISLRClassifier: parameter counts of the four seed models, harness, mixup, attention maps."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from test_case import TestCase
from tfislr.config import load_config
from tfislr.model import ISLRClassifier, build_classifier, parameter_groups

SMALL = dict(
    num_classes=5, max_len=6, embed_dim=16, dense_dim=16, transfo_dim=32,
    transfo_layers=3, num_heads=4, drop_rate=0.1,
)


def small_batch(lengths=(7, 4, 2), length=7, seed=0):
    rng = np.random.default_rng(seed)
    mask = (np.arange(length)[None] < np.array(lengths)[:, None]).astype("float32")
    return {"landmarks": rng.normal(size=(len(lengths), length, 100, 3)).astype("float32"),
            "padding_mask": mask}


def apply_classifier(model, batch, **kwargs):
    return model({"landmarks": batch["landmarks"], "padding_mask": batch["padding_mask"]}, **kwargs)


# --- parameter counts (docs/recipe.md §6), computed here from the layer sizes, independently of
# transformer_widths(), and checked against the original's logged totals.

def embedding_params(e=16):
    return (9 * e + 2 * e) + (101 * e + 2 * e) + 3 * 8 * 5 + 8 * e * 5 + (3 + e) * e + e + 3 * e * e + e


def part_mlp_params(dense, d_in, e=16):
    def branch(points):
        return points * e * dense + dense + 2 * dense  # Linear + BN (gamma, beta)

    return branch(100) + 2 * branch(21) + branch(21) + branch(25) + 4 * dense * d_in + 3 * d_in


def deberta_layer_params(hidden, out, buckets):
    table = 2 * buckets * hidden + 2 * hidden  # relative table + its LayerNorm
    attention = 4 * (hidden * hidden + hidden) + 2 * hidden  # q, k, v, out + LayerNorm
    feed_forward = (hidden * hidden + hidden) + (hidden * out + out) + 2 * out
    return table + attention + feed_forward


SEED_MODELS = {
    # (config, distilled): (total logged by the original, dense_dim, widths, dropouts)
    ("len25", False): (35_143_010, 512, [(1024, 1280), (1280, 1536), (1536, 1536)], [0.05, 0.1, 0.2]),
    ("len25", True): (9_819_298, 192, [(512, 768), (768, 768), (768, 512)], [0.05, 0.1, 0.1]),
    ("len80", False): (13_688_418, 256, [(512, 768), (768, 1024), (1024, 1024)], [0.05, 0.1, 0.2]),
    ("len80", True): (6_943_394, 192, [(512, 576), (576, 576), (576, 512)], [0.05, 0.1, 0.1]),
}


@pytest.mark.parametrize("name,distilled", list(SEED_MODELS))
def test_parameter_counts_match_the_original(name, distilled):
    total, dense, widths, dropouts = SEED_MODELS[(name, distilled)]
    config = load_config(name)
    buckets = config.data.max_len
    expected = {
        "embedding": embedding_params(),
        "part_mlps": part_mlp_params(dense, widths[0][0]),
        **{f"deberta_layer_{k}": deberta_layer_params(h, o, buckets) for k, (h, o) in enumerate(widths)},
        "head": widths[-1][1] * 250 + 250,
    }
    assert sum(expected.values()) == total  # the layer sizes reproduce the logged count

    model = build_classifier(config.model, num_classes=250, max_len=buckets, distilled=distilled)
    assert model.built
    assert parameter_groups(model) == expected
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == total
    assert model.encoder.hidden_dims == [h for h, _ in widths]
    assert model.encoder.output_dims == [o for _, o in widths]
    assert model.encoder.dropout_rates == pytest.approx(dropouts)
    branch_dropout = 0.05 if dense >= 256 else 0.025
    assert model.part_mlps.face_mlp.dropout == pytest.approx(branch_dropout)
    keras.backend.clear_session()


class TestISLRClassifier(TestCase):
    @pytest.mark.large  # every harness check calls the whole model
    def test_classifier_harness(self, tmp_path):
        # One DeBERTa layer: the harness checks how the parts compose (every check calls the
        # whole model; with 3 layers it took ~45 s, with 1 ~34 s). test_deberta_encoder runs it
        # on a stack of three layers of different widths.
        self.run_layer_test(
            ISLRClassifier,
            {**SMALL, "transfo_layers": 1},
            small_batch(),
            apply_classifier,
            expected_output_shape=(3, 5),
            padded_keys=["landmarks"],
            per_frame_output=False,
            deterministic_kwargs={"drop_rate": 0.0},
            long_length=20,  # > max_len: relative positions saturate
            tmp_path=tmp_path,
            expected_num_trainable_weights=57,  # embedding 12, part MLPs 24, 1 x 19, head 2
            float32_output=True,  # logits are float32 under every policy
        )


def test_save_load_subclassed_model_directly(tmp_path):
    model = ISLRClassifier(**SMALL)
    batch = small_batch()
    expected = np.asarray(apply_classifier(model, batch))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, ISLRClassifier)
    np.testing.assert_allclose(np.asarray(apply_classifier(restored, batch)), expected, atol=1e-6)


def test_mask_dtypes_and_missing_mask():
    model = ISLRClassifier(**SMALL)
    batch = small_batch(lengths=(7, 7, 7))
    expected = np.asarray(apply_classifier(model, batch))
    for dtype in ("bool", "int32", "float16"):
        got = model({"landmarks": batch["landmarks"], "padding_mask": batch["padding_mask"].astype(dtype)})
        np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)
    got = model({"landmarks": batch["landmarks"]})
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)
    with pytest.raises(ValueError, match="landmarks"):
        model(batch["landmarks"])


def test_pos_conv_padding_saves_loads_and_is_checked(tmp_path):
    """The option reaches the embedding, survives save/load, and a model saved before it
    existed (no key in its config) loads as it was trained: "extended"."""
    model = ISLRClassifier(**SMALL)
    assert (model.pos_conv_padding, model.embedding.conv_window) == ("max_len", SMALL["max_len"])
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert restored.embedding.conv_window == SMALL["max_len"]
    older = {k: v for k, v in model.get_config().items() if k != "pos_conv_padding"}
    assert ISLRClassifier.from_config(older).embedding.conv_window is None
    extended = ISLRClassifier(**SMALL, pos_conv_padding="extended")
    assert ISLRClassifier.from_config(extended.get_config()).pos_conv_padding == "extended"
    with pytest.raises(ValueError, match="pos_conv_padding must be one of max_len, extended"):
        ISLRClassifier(**SMALL, pos_conv_padding="same")
    config = load_config("demo", ["model.pos_conv_padding=extended"])
    built = build_classifier(config.model, 10, config.data.max_len)
    assert built.embedding.conv_window is None


def test_invalid_widths_raise():
    with pytest.raises(ValueError, match="divisible"):
        ISLRClassifier(**{**SMALL, "transfo_dim": 30})


def _manual_mixup(model, batch, lam, permutation, layer):
    """Mixup written out by hand from the sub-layers (inference mode)."""
    mask = tf.constant(batch["padding_mask"])
    features = model.embedding(batch["landmarks"], padding_mask=mask)
    hidden = model.part_mlps(features, padding_mask=mask, training=False)
    for k, block in enumerate(model.encoder.encoder_layers):
        if k == layer:
            hidden = lam[:, None, None] * hidden + (1 - lam[:, None, None]) * tf.gather(hidden, permutation)
            mask = tf.maximum(mask, tf.gather(mask, permutation))
        hidden = block(hidden, padding_mask=mask, training=False)
    pooled = tf.reduce_sum(hidden * mask[:, :, None], 1) / tf.reduce_sum(mask, 1, keepdims=True)
    return model.head(pooled).numpy()


def test_mixup_hook_in_graph():
    model = ISLRClassifier(**SMALL)
    batch = small_batch(lengths=(7, 3, 5))
    lam = np.array([0.3, 0.8, 0.5], "float32")
    permutation = np.array([2, 0, 1], "int32")
    model(batch)  # create the variables outside tf.function (that first trace would repeat)

    @tf.function
    def mixed(layer):
        return model(batch, training=False,
                     mixup={"lambda": lam, "permutation": permutation, "layer": layer})

    for layer in range(3):
        got = mixed(tf.constant(layer, tf.int32)).numpy()
        np.testing.assert_allclose(got, _manual_mixup(model, batch, lam, permutation, layer),
                                   rtol=1e-5, atol=1e-5)
    # one trace serves every layer index
    assert mixed.experimental_get_tracing_count() == 1
    # lambda = 1 with any permutation = no mixup except for the union mask; identity -> equal
    identity = {"lambda": np.ones(3, "float32"), "permutation": np.arange(3, dtype="int32"),
                "layer": tf.constant(1)}
    np.testing.assert_allclose(model(batch, mixup=identity).numpy(), model(batch).numpy(), atol=1e-5)
    # training mode runs and is finite
    out = model(batch, training=True, mixup={"lambda": lam, "permutation": permutation, "layer": 2})
    assert np.isfinite(out.numpy()).all()


def test_mixup_layer_per_clip():
    """A [B] layer mixes each clip at its own layer (groups of the train step, one per GPU
    of the original): clips 0-1 pair at layer 0, clips 2-3 at layer 2."""
    model = ISLRClassifier(**SMALL)
    batch = small_batch(lengths=(7, 3, 5, 6))
    lam = np.array([0.3, 0.8, 0.5, 0.6], "float32")
    permutation = np.array([1, 0, 3, 2], "int32")
    got = model(batch, mixup={"lambda": lam, "permutation": permutation,
                              "layer": np.array([0, 0, 2, 2], "int32")}).numpy()
    np.testing.assert_allclose(got[:2], _manual_mixup(model, batch, lam, permutation, 0)[:2],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[2:], _manual_mixup(model, batch, lam, permutation, 2)[2:],
                               rtol=1e-5, atol=1e-5)


def test_attention_scores():
    model = ISLRClassifier(**SMALL)
    batch = small_batch(lengths=(7, 4, 2))
    scores = model.attention_scores(batch)
    assert len(scores) == 3
    for layer_scores in scores:
        s = np.asarray(layer_scores)
        assert s.shape == (3, 4, 7, 7) and s.dtype == np.float32
        mask = batch["padding_mask"]
        real_rows = s.sum(-1)[mask[:, None, :].repeat(4, 1) > 0]
        np.testing.assert_allclose(real_rows, 1.0, atol=1e-5)
        assert (s[1, :, 4:] == 0).all() and (s[1, :, :, 4:] == 0).all()


def test_cli_prints_counts(capsys):
    from tfislr.cli.model import main

    assert main(["--config", "len80", "--no-summary"]) == 0
    out = capsys.readouterr().out
    assert "13,688,418" in out and "6,943,394" in out
    assert "[(512, 768), (768, 1024), (1024, 1024)]" in out


def test_cli_widens_the_summary_only(capsys, monkeypatch):
    """Keras's rich summary, 80 columns when stdout is not a terminal, is printed 120 wide;
    its --help and the rest of the process keep the terminal's width (COLUMNS unset)."""
    import os

    from tfislr.cli.model import main

    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["--config", "demo", "--num-classes", "6"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("┏")]
    assert "Param #" in out and table and all(len(line) > 80 for line in table)
    assert "COLUMNS" not in os.environ
