"""MeanTeacherDistiller: EMA teacher, two optimizers, schedules, mixup hook, distilled switch.

Most tests use a tiny stand-in classifier with the classifier contract (dict inputs,
`mixup` hook, BatchNorm, LayerNorms) so they run in seconds; the real-model tests use
`tfislr.model.build_classifier` at a small width (`small_real_model`, in tests/tiny_models.py
with the stand-in). The optimizers' own rules are tested in test_optimizers.py.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfislr.model import modes
from tfislr.training import mean_teacher, schedules
from tfislr.training.optimizers import PreReducedSGD
from tiny_models import NUM_CLASSES, make_distiller, make_views, small_real_model, tiny_config


def batch(rng, n=8):
    views = make_views(rng, n)
    labels = rng.integers(0, NUM_CLASSES, size=n).astype("int32")
    return tf.nest.map_structure(tf.constant, views), tf.constant(labels)


def values(variables):
    return [np.array(v.numpy()) for v in variables]


def test_one_step_updates_teacher_by_ema_with_alpha_one_half():
    distiller = make_distiller()
    rng = np.random.default_rng(0)
    teacher_before = values(distiller.teacher.trainable_variables)
    student_before = values(distiller.student.trainable_variables)
    bn_before = distiller.teacher.bn.moving_mean.numpy().copy()
    distiller.train_on_batch(*batch(rng))
    assert int(distiller.step_counter.numpy()) == 1
    student_after = values(distiller.student.trainable_variables)
    teacher_after = values(distiller.teacher.trainable_variables)
    # Step 1: α = min(1 − 1/2, 0.97) = 0.5.
    for t0, s1, t1 in zip(teacher_before, student_after, teacher_after):
        np.testing.assert_allclose(t1, 0.5 * t0 + 0.5 * s1, rtol=1e-5, atol=1e-6)
    # The schedule's first lr is 0 (as torch's was): the student moves from step 2 on.
    distiller.train_on_batch(*batch(rng))
    moved = [np.abs(a - b).max() for a, b in zip(student_before, values(distiller.student.trainable_variables))]
    assert max(moved) > 0
    # Teacher BatchNorm statistics come from its own forward passes, not from the EMA.
    assert not np.allclose(distiller.teacher.bn.moving_mean.numpy(), bn_before)


def test_teacher_is_initialised_separately():
    distiller = make_distiller()
    differences = [
        np.abs(t.numpy() - s.numpy()).max()
        for t, s in zip(distiller.teacher.trainable_variables, distiller.student.trainable_variables)
        if t.path.endswith("kernel")
    ]
    assert min(differences) > 1e-3


def test_fit_runs_reports_three_accuracies_and_counts_steps():
    distiller = make_distiller()
    rng = np.random.default_rng(1)
    views = make_views(rng, 32)
    labels = rng.integers(0, NUM_CLASSES, size=32)
    train = tf.data.Dataset.from_tensor_slices((views, labels)).batch(8, drop_remainder=True)
    evaluation = tf.data.Dataset.from_tensor_slices((views["student"], labels)).batch(8)
    history = distiller.fit(train, epochs=2, validation_data=evaluation, verbose=0, shuffle=False)
    for key in ("loss", "student_loss", "distilled_loss", "consistency_loss",
                "val_student_accuracy", "val_teacher_accuracy", "val_distilled_accuracy"):
        assert key in history.history, key
        assert np.all(np.isfinite(history.history[key]))
    assert int(distiller.step_counter.numpy()) == 8
    assert int(distiller.student_optimizer.iterations.numpy()) == 8
    assert int(distiller.distilled_optimizer.iterations.numpy()) == 8
    logs = distiller.evaluate(evaluation, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "student_accuracy", "teacher_accuracy", "distilled_accuracy"}
    # The accuracy of each model is its own.
    predictions = distiller.predict(evaluation, verbose=0)
    for name in mean_teacher.MODEL_NAMES:
        accuracy = (predictions[name].argmax(-1) == labels).mean()
        assert logs[f"{name}_accuracy"] == pytest.approx(accuracy)


def test_optimizers_follow_the_recipe():
    distiller = make_distiller()
    for optimizer in (distiller.student_optimizer, distiller.distilled_optimizer):
        assert isinstance(optimizer, keras.optimizers.AdamW)
        assert optimizer.weight_decay == pytest.approx(0.4)
        assert optimizer.beta_1 == pytest.approx(0.9) and optimizer.beta_2 == pytest.approx(0.999)
        assert optimizer.epsilon == pytest.approx(1e-8)
        schedule = optimizer._learning_rate
        assert isinstance(schedule, schedules.WarmupLinearDecay)
        assert schedule.total_steps == 8 and schedule.warmup_steps == 2
    student_ids = {id(v) for v in distiller.student_optimizer._trainable_variables}
    assert student_ids == {id(v) for v in distiller.student.trainable_variables}
    distilled_ids = {id(v) for v in distiller.distilled_optimizer._trainable_variables}
    assert distilled_ids == {id(v) for v in distiller.distilled.trainable_variables}
    assert distiller.config.max_grad_norm == 10.0


def test_plain_optimizers_are_rejected():
    distiller = make_distiller()
    with pytest.raises(ValueError, match="skip its own cross-replica"):
        distiller.compile(keras.optimizers.SGD(), keras.optimizers.SGD())


def test_gradients_are_clipped_by_global_norm():
    distiller = make_distiller("train.max_grad_norm=1e-3")
    rng = np.random.default_rng(3)
    sgd = {name: PreReducedSGD(learning_rate=1.0) for name in ("student", "distilled")}
    sgd["student"].build(distiller.student.trainable_variables)
    sgd["distilled"].build(distiller.distilled.trainable_variables)
    distiller.compile(sgd["student"], sgd["distilled"])
    before = values(distiller.student.trainable_variables)
    distiller.train_on_batch(*batch(rng))
    after = values(distiller.student.trainable_variables)
    update_norm = np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(after, before)))
    # lr 1, clipped gradient norm 1e-3 → the update has norm 1e-3.
    assert update_norm == pytest.approx(1e-3, rel=1e-3)


def test_mixup_shares_lambda_and_permutation_and_follows_the_schedule():
    distiller = make_distiller("train.mix_proba=1.0", "train.mix_end_fraction=100")
    applied, lam, permutation, mixes = distiller.mixup(8, tf.constant(5, tf.int64))
    assert applied.numpy().all()
    for name in mean_teacher.MODEL_NAMES:
        assert mixes[name]["lambda"] is lam and mixes[name]["permutation"] is permutation
        layer = mixes[name]["layer"].numpy()  # one group of 8: one layer for its clips
        assert layer.shape == (8,) and len(set(layer)) == 1 and 0 <= layer[0] < 3
    assert sorted(permutation.numpy().tolist()) == list(range(8))
    # Same step, same draw: no hidden Python state.
    again = distiller.mixup(8, tf.constant(5, tf.int64))
    np.testing.assert_array_equal(again[1].numpy(), lam.numpy())
    # mixup probability 0 from end_fraction · epochs on.
    off = make_distiller("train.mix_proba=1.0", "train.mix_end_fraction=0.5")
    off.epoch.assign(1)  # 1-based epoch 2 of 2 ≥ 0.5 · 2
    applied, lam, permutation, _ = off.mixup(8, tf.constant(5, tf.int64))
    assert not applied.numpy().any()
    np.testing.assert_array_equal(lam.numpy(), np.ones(8))


@pytest.mark.large  # two distillers trained two steps each
def test_mixing_changes_the_step():
    rng = np.random.default_rng(4)
    data = batch(rng)
    results = {}
    for proba in ("0.0", "1.0"):
        distiller = make_distiller(f"train.mix_proba={proba}", "train.mix_end_fraction=100")
        distiller.train_on_batch(*data)
        distiller.train_on_batch(*data)
        results[proba] = values(distiller.student.trainable_variables)
    assert max(np.abs(a - b).max() for a, b in zip(results["0.0"], results["1.0"])) > 1e-6


@pytest.mark.large  # traces the step in both modes
def test_distilled_trains_in_inference_mode_from_half_way():
    rng = np.random.default_rng(5)
    distiller = make_distiller("train.epochs=4")
    assert distiller.config.distilled_switch_epoch == 2
    stats = lambda: distiller.distilled.bn.moving_mean.numpy().copy()  # noqa: E731
    before = stats()
    distiller.train_on_batch(*batch(rng))
    assert not np.allclose(stats(), before)  # training mode: BN statistics move
    distiller.epoch.assign(2)
    before = stats()
    kernel = distiller.distilled.head.kernel.numpy().copy()
    distiller.train_on_batch(*batch(rng))
    np.testing.assert_array_equal(stats(), before)  # inference mode: frozen statistics
    assert np.abs(distiller.distilled.head.kernel.numpy() - kernel).max() > 0  # still learns
    # The switch is a config option.
    clean = make_distiller("train.epochs=4", "train.distilled_inference_mode_second_half=false")
    clean.epoch.assign(3)
    before = clean.distilled.bn.moving_mean.numpy().copy()
    clean.train_on_batch(*batch(rng))
    assert not np.allclose(clean.distilled.bn.moving_mean.numpy(), before)


def test_consistency_weight_ramps_with_the_step_counter():
    distiller = make_distiller(steps_per_epoch=20)  # 40 steps, R = 10
    assert distiller.config.rampup_length == 10


def test_mixed_precision_step_runs_with_loss_scaling():
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        distiller = make_distiller("runtime.precision=mixed_float16")
        assert isinstance(distiller.student_optimizer, keras.optimizers.LossScaleOptimizer)
        logs = distiller.train_on_batch(*batch(np.random.default_rng(6)), return_dict=True)
        assert np.isfinite(logs["loss"])
    finally:
        keras.config.set_dtype_policy(policy)


def _use_sgd(distiller, learning_rate=0.05, jit_compile=False):
    optimizers = []
    for model in (distiller.student, distiller.distilled):
        optimizer = PreReducedSGD(learning_rate=learning_rate)
        optimizer.build(model.trainable_variables)
        optimizers.append(optimizer)
    distiller.compile(*optimizers, jit_compile=jit_compile)


@pytest.mark.extra_large
def test_jit_compiled_step_matches_the_graph_step():
    # SGD, not Adam: Adam's m/sqrt(v) turns rounding noise on near-zero gradients into
    # ±lr steps, which would hide a real difference behind a loose tolerance. No mixup
    # or dropout here: XLA's random float kernels give other numbers for the same seed.
    rng = np.random.default_rng(7)
    data = batch(rng)
    results = []
    for jit in (False, True):
        distiller = make_distiller("train.mix_proba=0", "model.drop_rate=0")
        _use_sgd(distiller, jit_compile=jit)
        for _ in range(3):
            distiller.train_on_batch(*data)
        results.append(values(distiller.student.trainable_variables + distiller.teacher.variables))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    mixed = make_distiller("runtime.jit_compile=true", "train.mix_proba=1", "train.mix_end_fraction=100")
    logs = mixed.train_on_batch(*data, return_dict=True)
    assert np.isfinite(logs["loss"])


def test_the_train_step_has_no_int32_transpose():
    """TF's oneDNN pass logs "E0000 ... oneDNN supports DT_INT32 only on platforms with
    AVX-512" for an int32 Transpose on CPUs without AVX-512 (docs/troubleshooting.md);
    mixup's layer draw had one."""
    distiller = make_distiller("train.mix_proba=1")
    data = batch(np.random.default_rng(9))
    graph = tf.function(distiller.train_step).get_concrete_function(data).graph.as_graph_def()
    nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
    transposes = [n.attr["T"].type for n in nodes if n.op == "Transpose"]
    assert tf.int32.as_datatype_enum not in transposes


def test_unmixed_batches_are_exact_no_ops_in_the_real_model():
    """The train step passes λ = 1 and the identity permutation to batches it does not mix."""
    _, model = small_real_model()
    rng = np.random.default_rng(8)
    views = make_views(rng, 6, max_len=25)["student"]
    plain = model(views, training=False)
    for layer in range(3):
        mixup = {"lambda": tf.ones(6), "permutation": tf.range(6), "layer": tf.constant(layer)}
        np.testing.assert_array_equal(model(views, training=False, mixup=mixup).numpy(), plain.numpy())
    mixed = {"lambda": tf.fill([6], 0.5), "permutation": tf.constant([1, 0, 3, 2, 5, 4]),
             "layer": tf.constant(1)}
    assert np.abs(model(views, training=False, mixup=mixed).numpy() - plain.numpy()).max() > 1e-4


def test_one_frozen_config_carries_every_step_setting():
    import dataclasses

    config = tiny_config("train.ousm_k=2", "train.ema_decay=0.9")
    settings = mean_teacher.MeanTeacherConfig.from_config(config, NUM_CLASSES, total_steps=40)
    # Every field not given by the run is the TrainConfig field of the same name.
    for field in dataclasses.fields(settings):
        if field.name not in ("num_classes", "total_steps", "num_mix_layers"):
            assert getattr(settings, field.name) == getattr(config.train, field.name), field.name
    assert settings.ousm_k == 2 and settings.ema_decay == 0.9
    assert settings.num_mix_layers == config.model.transfo_layers
    assert settings.rampup_length == 10 and settings.distilled_switch_epoch == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.ousm_k = 1
    with pytest.raises(ValueError, match="ousm_k"):
        dataclasses.replace(settings, ousm_k=-1)
    with pytest.raises(ValueError, match="total_steps"):
        dataclasses.replace(settings, total_steps=0)
    distiller = make_distiller()
    assert isinstance(distiller.config, mean_teacher.MeanTeacherConfig)
    with pytest.raises(ValueError, match="MeanTeacherConfig"):
        mean_teacher.MeanTeacherDistiller(
            distiller.student, distiller.teacher, distiller.distilled, {"ousm_k": 3}
        )


def test_teacher_ema_update():
    """θ_T ← α θ_T + (1 − α) θ_S for every pair, in a traced step, as Keras' own ops (no
    XLA-compiled function)."""
    distiller = make_distiller()
    teacher_before = values(distiller.teacher.trainable_variables)
    student = values(distiller.student.trainable_variables)
    @tf.function
    def update(alpha):
        distiller.update_teacher(alpha)

    graph = update.get_concrete_function(tf.constant(0.25)).graph.as_graph_def()
    compiled = [f.signature.name for f in graph.library.function if f.attr["_XlaMustCompile"].b]
    assert compiled == []
    update(tf.constant(0.25))
    for t0, s, t1 in zip(teacher_before, student, values(distiller.teacher.trainable_variables)):
        np.testing.assert_allclose(t1, np.float32(0.25) * t0 + np.float32(0.75) * s, rtol=1e-6)
