"""Any per-replica batch from 0 up: the distiller's steps at B = 0, and validation whose last
global batch is smaller than the replica count giving the same metrics on 1 and 2 replicas.

The layers themselves are checked at B = 0 by the layer harness (check 8). Logical CPU
devices must be configured before TF initialises, so the replica runs happen in fresh
subprocesses (this file is also the worker: `python tests/model/test_empty_batch.py ...`).
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
NUM_CLASSES = 5
MAX_LEN = 10
EVAL_GLOBAL_BATCH = 6
# One DeBERTa layer: the steps are what is checked here (each layer adds graph to trace);
# the three-layer encoder takes B = 0 in its layer harness.
SMALL = [
    f"data.max_len={MAX_LEN}", "data.global_batch_size=8", "train.batch_group_size=8",
    f"data.eval_global_batch_size={EVAL_GLOBAL_BATCH}", "model.embed_dim=4",
    "model.dense_dim=16", "model.transfo_dim=32", "model.distill_dense_dim=16",
    "model.distill_transfo_dim=32", "model.num_heads=4", "model.transfo_layers=1",
    "train.epochs=2",
]


def _distiller(strategy=None):
    """The real (small) classifiers in a distiller, identical weights on every call."""
    import keras
    import tensorflow as tf

    from tfislr.config import load_config
    from tfislr.training.mean_teacher import build_distiller

    keras.utils.set_random_seed(0)
    with (strategy or tf.distribute.get_strategy()).scope():
        return build_distiller(load_config("len25", SMALL), NUM_CLASSES, steps_per_epoch=2)


def _clips(n, seed=1):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, MAX_LEN + 1, size=n)
    mask = (np.arange(MAX_LEN)[None] < lengths[:, None]).astype("float32")
    inputs = {
        "landmarks": (rng.normal(size=(n, MAX_LEN, 100, 3)) * mask[..., None, None]).astype("float32"),
        "padding_mask": mask,
    }
    return inputs, rng.integers(0, NUM_CLASSES, size=n).astype("int32")


# ----------------------------------------------------------------------------- one device
@pytest.fixture(scope="module")
def distiller():
    return _distiller()


@pytest.mark.large  # traces the distiller's test and predict steps
def test_test_and_predict_steps_take_an_empty_batch(distiller):
    import tensorflow as tf

    inputs, labels = _clips(0)
    data = (tf.nest.map_structure(tf.constant, inputs), tf.constant(labels))
    for metric in distiller.metrics:
        metric.reset_state()
    logs = tf.function(distiller.test_step)(data)
    # Nothing seen: the metrics hold no sample (a NaN loss would poison the epoch's mean).
    assert all(np.isfinite(float(np.asarray(v).reshape(-1)[0])) for v in logs.values()), logs
    assert float(distiller.eval_loss_tracker.count.numpy()) == 0
    outputs = tf.function(distiller.predict_step)(data)
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        name: (0, NUM_CLASSES) for name in ("student", "teacher", "distilled")
    }


@pytest.mark.large  # traces the whole distiller train step
def test_train_step_takes_an_empty_batch_without_nan(distiller):
    import tensorflow as tf

    from tfislr.training.mean_teacher import MODEL_NAMES

    inputs, labels = _clips(0)
    views = {name: tf.nest.map_structure(tf.constant, inputs) for name in MODEL_NAMES}
    logs = tf.function(distiller.train_step)((views, tf.constant(labels)))
    assert all(np.isfinite(np.asarray(v)).all() for v in logs.values()), logs
    # No clip, no gradient and no BatchNorm update; AdamW's decoupled weight decay and the
    # EMA may still move weights (as an empty step of the original would): never to NaN.
    for model in distiller.named_models().values():
        assert all(np.isfinite(np.array(v)).all() for v in model.weights), model.name


def test_the_classifier_maps_an_empty_batch_to_empty_logits(distiller):
    import tensorflow as tf

    inputs, _ = _clips(0)
    spec = {k: tf.TensorSpec((None,) + v.shape[1:], v.dtype) for k, v in inputs.items()}
    for training in (False, True):
        call = tf.function(lambda x, t=training: distiller.distilled(x, training=t),
                           input_signature=[spec])
        assert tuple(call(inputs).shape) == (0, NUM_CLASSES)


# ----------------------------------------------------------------------------- replicas
def _metrics_worker(strategy_name, sizes):
    """Validation metrics and predictions for each number of clips, as JSON on stdout."""
    from tfislr.training.strategy import get_strategy

    strategy = get_strategy(strategy_name)
    import tensorflow as tf

    from tfislr.data.pipeline import make_eval_dataset  # noqa: F401  (same batching below)

    distiller = _distiller(strategy)
    results = {"replicas": strategy.num_replicas_in_sync}
    for n in map(int, sizes.split(",")):
        inputs, labels = _clips(n, seed=n)
        # The global eval batch, as make_eval_dataset builds it (last batch smaller).
        dataset = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(EVAL_GLOBAL_BATCH)
        logs = distiller.evaluate(dataset, verbose=0, return_dict=True)
        predicted = distiller.predict(dataset.map(lambda x, y: x), verbose=0)
        results[n] = {
            "logs": {k: float(np.asarray(v).reshape(-1)[0]) for k, v in logs.items()},
            "predictions": {k: np.asarray(v).tolist() for k, v in predicted.items()},
        }
    print(json.dumps(results))


@pytest.mark.extra_large
def test_two_replicas_give_the_metrics_of_one_with_empty_replica_batches():
    sizes = "13,5,1"  # 13 = 6 + 6 + 1 and 1: the last global batch leaves a replica empty
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    runs = {}
    for name in ("default", "cpu:2"):
        result = subprocess.run([sys.executable, __file__, "metrics", name, sizes], cwd=REPO,
                                env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        runs[name] = json.loads(result.stdout.strip().splitlines()[-1])
    one, two = runs["default"], runs["cpu:2"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    for n in sizes.split(","):
        assert set(one[n]["logs"]) == {"loss", "student_accuracy", "teacher_accuracy",
                                       "distilled_accuracy"}
        one_logs, two_logs = dict(one[n]["logs"]), dict(two[n]["logs"])
        # Accuracies count clips: exactly equal. The loss is a float sum over clips, which
        # 2 replicas add in another order: equal to float32 rounding (measured 2e-7).
        assert two_logs.pop("loss") == pytest.approx(one_logs.pop("loss"), rel=1e-6, abs=0), n
        assert one_logs == two_logs, n
        for name, logits in one[n]["predictions"].items():
            logits, other = np.asarray(logits), np.asarray(two[n]["predictions"][name])
            assert logits.shape == other.shape == (int(n), NUM_CLASSES)
            # Same clips, other per-replica batch shapes: the CPU kernels may round the
            # last bit differently (measured 1.8e-7); the predicted classes are the same.
            np.testing.assert_allclose(other, logits, rtol=0, atol=1e-6)
            np.testing.assert_array_equal(other.argmax(-1), logits.argmax(-1))


if __name__ == "__main__":
    if sys.argv[1] == "metrics":
        _metrics_worker(*sys.argv[2:])
    else:
        raise SystemExit(f"unknown worker mode {sys.argv[1]}")
