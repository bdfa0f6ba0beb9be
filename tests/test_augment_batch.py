"""tfislr.augment_batch: the batched augmentation equals the host path's, clip by clip."""

import dataclasses
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfislr import augment_batch as ab
from tfislr import landmarks as lm
from tfislr.augment import STEPS, Augmenter
from tfislr.config import AugmentConfig

MAX_LEN = 40
PROBABILITIES = ("face_cutmix_p", "hand_fill_p", "interpolate_p", "flip_p", "rotate_p",
                 "crop_p", "crop_p_phase2", "scale_p")
ALWAYS = {p: 1.0 for p in PROBABILITIES}


# A skeleton every clip scatters around: coordinates are not centred per point (as real
# ones are not), so that a flip or a rotation moves the statistics below.
TEMPLATE = np.random.default_rng(0).normal(size=(lm.NUM_POINTS, 3)) + [0.5, 0.2, 0.0]


def make_clip(num_frames, rng):
    """A real-looking clip: the template plus noise, one hand absent in runs of frames (the
    other hand sometimes too), arms absent (x = 0) in some frames, scattered missing points
    and, now and then, no face (CutMix must then skip such a partner)."""
    x = (TEMPLATE + 0.3 * rng.normal(size=(num_frames, lm.NUM_POINTS, 3))).astype(np.float32)
    for hand in (lm.LEFT_HAND_POINTS, lm.RIGHT_HAND_POINTS):
        if rng.random() < 0.7:
            start = rng.integers(0, num_frames)
            x[start:start + rng.integers(1, num_frames + 1), hand] = 0.0
    if rng.random() < 0.3:
        rows = np.flatnonzero(rng.random(num_frames) < 0.4)
        x[np.ix_(rows, lm.ARM_POINTS, [0])] = 0.0
    x[rng.random(x.shape[:2]) < 0.05] = 0.0
    if rng.random() < 0.2:
        x[:, lm.FACE_CUTMIX_POINTS, :2] = 0.0
    return x


def _pad(x):
    out = np.zeros((MAX_LEN, lm.NUM_POINTS, 3), np.float32)
    out[: len(x)] = x[:MAX_LEN]
    return out


def _clips(count, seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, MAX_LEN + 1, size=count)
    lengths[:4] = [1, 2, 19, MAX_LEN]  # no crop below 20 frames; the longest
    return ([make_clip(int(n), rng) for n in lengths],
            [make_clip(int(rng.integers(1, MAX_LEN + 1)), rng) for _ in lengths])


def both_paths(config, clips, partners, phase):
    """(host outputs padded [N, L, 100, 3], host lengths, batched outputs, batched lengths,
    the stacked view parameters) for view seeds [i, 5] of clip i, each with its partner."""
    augmenter = Augmenter(config)

    @tf.function(reduce_retracing=True)
    def host(x, partner, seed):
        return augmenter(x, partner, seed, phase=tf.constant(phase))

    @tf.function(reduce_retracing=True)
    def parameters(seed, num_frames):
        return augmenter.view_parameters(seed, num_frames, phase=tf.constant(phase))

    host_out, host_len, params, partner_pads, partner_lengths = [], [], [], [], []
    for i, (x, partner) in enumerate(zip(clips, partners)):
        seed = tf.constant([i, 5], tf.int32)
        out = host(x, partner, seed).numpy()
        host_out.append(_pad(out))
        host_len.append(len(out))
        p = {k: v.numpy() for k, v in parameters(seed, len(x)).items()}
        params.append(p)
        fires = p["fires"][STEPS.index("face_cutmix")]
        # What the pipeline ships: the partner only when that view's CutMix fires.
        partner_pads.append(_pad(partner) if fires else np.zeros_like(host_out[-1]))
        partner_lengths.append(len(partner) if fires else 0)
    stacked = {k: np.stack([p[k] for p in params]) for k in params[0]}
    out, lengths = ab.augment_batch(
        np.stack([_pad(x) for x in clips]), [len(x) for x in clips], np.stack(partner_pads),
        partner_lengths, stacked, config.hand_fill)
    return np.stack(host_out), np.array(host_len), out.numpy(), lengths.numpy(), stacked


@pytest.mark.parametrize("hand_fill", ["original", "missing_frames"])
@pytest.mark.parametrize("phase", [1, 2])
@pytest.mark.parametrize("forced", [True, False], ids=["every_step", "default_p"])
def test_batched_equals_the_host_path_clip_by_clip(hand_fill, phase, forced):
    config = AugmentConfig(hand_fill=hand_fill, **(ALWAYS if forced else {}))
    clips, partners = _clips(48, seed=phase + 2 * forced)
    host, host_len, batched, lengths, params = both_paths(config, clips, partners, phase)
    np.testing.assert_array_equal(lengths, host_len)
    np.testing.assert_allclose(batched, host, rtol=0, atol=1e-5)
    # The padding stays exactly zero, as the pipeline's `_pad` makes it.
    assert not batched[np.arange(MAX_LEN)[None, :] >= lengths[:, None]].any()
    fired = params["fires"].mean(axis=0)
    if forced:  # every step ran (CutMix and the hand fill only in phase 1)
        expected = [phase == 1, phase == 1, 1, 1, 1, 1, 1]
        np.testing.assert_array_equal(fired, expected)
        assert (lengths < [len(x) for x in clips]).sum() > 20  # crops shortened clips


def test_each_step_alone_equals_the_host_path():
    """One step at a time, in both phases, so that one step's error cannot hide behind
    another's."""
    clips, partners = _clips(24, seed=9)
    for probability in PROBABILITIES:
        config = dataclasses.replace(
            AugmentConfig(), **{p: float(p == probability) for p in PROBABILITIES})
        for phase in (1, 2):
            host, host_len, batched, lengths, _ = both_paths(config, clips, partners, phase)
            where = f"{probability}, phase {phase}"
            np.testing.assert_array_equal(lengths, host_len, err_msg=where)
            np.testing.assert_allclose(batched, host, rtol=0, atol=1e-5, err_msg=where)


def _per_clip_statistics(outputs, lengths):
    """[N, 7]: per clip-view, the mean and std of x, y, z over its frames, and its length."""
    rows = []
    for out, length in zip(outputs, lengths):
        frames = out[:length].reshape(-1, 3)
        rows.append(np.concatenate([frames.mean(0), frames.std(0), [length]]))
    return np.array(rows)


def _z_scores(a, b):
    """|difference of the means| of two samples of statistics, in standard errors."""
    error = np.sqrt(a.var(axis=0) / len(a) + b.var(axis=0) / len(b))
    return np.abs(a.mean(axis=0) - b.mean(axis=0)) / error


@pytest.mark.large
def test_both_paths_draw_the_same_distributions():
    """Per phase, 600 clip-views drawn by each path on their own (other clips, other
    seeds: a test of the distributions, not of equality): the means of the per-clip-view
    statistics agree within 5 standard errors; the same check catches a batch augmented
    without flips (it must be able to fail)."""
    config = AugmentConfig()
    host_clips, host_partners = _clips(600, seed=21)
    batch_clips, batch_partners = _clips(600, seed=22)
    for phase in (1, 2):
        host, host_len, _, _, _ = both_paths(config, host_clips, host_partners, phase)
        _, _, batched, lengths, _ = both_paths(config, batch_clips, batch_partners, phase)
        _, _, unflipped, unflipped_len, _ = both_paths(
            dataclasses.replace(config, flip_p=0.0), batch_clips, batch_partners, phase)
        reference = _per_clip_statistics(host, host_len)
        z = _z_scores(reference, _per_clip_statistics(batched, lengths))
        assert np.all(z < 5), (phase, z)
        z = _z_scores(reference, _per_clip_statistics(unflipped, unflipped_len))
        assert np.any(z > 5), (phase, z)


def test_empty_batch_and_xla_give_the_same_shapes_and_values():
    config = AugmentConfig(**ALWAYS)
    clips, partners = _clips(8, seed=4)
    _, _, batched, lengths, params = both_paths(config, clips, partners, 1)
    partner_lengths = np.array([len(p) for p in partners], np.int32)
    inputs = (np.stack([_pad(x) for x in clips]), np.array([len(x) for x in clips], np.int32),
              np.stack([_pad(p) for p in partners]), partner_lengths, params)
    compiled = tf.function(ab.augment_batch, jit_compile=True)
    xla_out, xla_len = compiled(*inputs)
    np.testing.assert_array_equal(xla_len, lengths)
    np.testing.assert_allclose(xla_out, batched, rtol=0, atol=1e-5)
    empty = compiled(*tf.nest.map_structure(lambda a: a[:0], inputs))
    assert empty[0].shape == (0, MAX_LEN, lm.NUM_POINTS, 3) and empty[1].shape == (0,)


def test_bad_arguments_raise():
    clips = tf.zeros([1, MAX_LEN, lm.NUM_POINTS, 3])
    with pytest.raises(ValueError, match="hand_fill must be one of"):
        ab.augment_batch(clips, [1], clips, [0], {}, "sometimes")

    @tf.function(input_signature=[tf.TensorSpec([1, None, lm.NUM_POINTS, 3])])
    def dynamic(x):
        return ab.augment_batch(x, [1], x, [0], {})

    with pytest.raises(ValueError, match="static sequence length"):
        dynamic.get_concrete_function()


_TWO_REPLICAS = textwrap.dedent(
    """
    import sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    from test_pipeline import _fake_store
    from tfislr.augment import Augmenter
    from tfislr.augment_batch import augment_views
    from tfislr.data import pipeline
    store = _fake_store(np.arange(1, 13) + 8, np.arange(12) % 3, np.arange(12) % 4)  # <= 20

    def dataset(device):  # global batch 1: the second replica's batch holds 0 clips
        return pipeline.make_train_dataset(store, np.arange(12), 1, 20, seed=0,
                                           augmenter=Augmenter(), augment_device=device)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for jit in (False, True):
        step = tf.function(lambda raw: augment_views(raw, pipeline.VIEW_NAMES),
                           jit_compile=jit)
        host = iter(dataset("host"))
        for raw, _ in strategy.experimental_distribute_dataset(dataset("accelerator")):
            views = strategy.run(step, args=(raw,))
            expected = next(host)[0]
            for name in pipeline.VIEW_NAMES:
                first, second = strategy.experimental_local_results(views[name]["landmarks"])
                assert first.shape == (1, 20, 100, 3) and second.shape == (0, 20, 100, 3)
                np.testing.assert_allclose(first, expected[name]["landmarks"], atol=1e-5)
    print("TWO REPLICAS OK")
    """
)


def test_two_replicas_one_with_an_empty_batch():
    """MirroredStrategy on 2 logical CPUs, global batch 1 (per-replica batches 1 and 0),
    with and without XLA: the replica with a clip gets the host path's views."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    tests = pathlib.Path(__file__).resolve().parent
    result = subprocess.run([sys.executable, "-c", _TWO_REPLICAS, str(tests / "data")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert "TWO REPLICAS OK" in result.stdout, result.stderr[-3000:]
