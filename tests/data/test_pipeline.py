"""tf.data pipelines: shapes, masks, order, seeds, partners, augmenter plumbing, distribution."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfislr.data import pipeline
from tfislr.data.store import MANIFEST_COLUMNS, PreparedStore


def _fake_store(lengths, labels, participants, max_len=25):
    """Sequence i is filled with the value i + 1, so every frame says where it came from."""
    lengths = np.asarray(lengths)
    row_splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.repeat(np.arange(1, len(lengths) + 1, dtype=np.float32), lengths)
    values = np.broadcast_to(values[:, None, None], (len(values), 100, 3)).copy()
    n = len(lengths)
    manifest = pd.DataFrame(
        {
            "sequence_id": np.arange(n) + 100, "participant_id": np.asarray(participants),
            "sign": [f"s{label}" for label in labels], "label": np.asarray(labels),
            "path": [f"p/{i}.parquet" for i in range(n)], "n_raw_frames": lengths,
            "n_hand_frames": lengths, "n_frames": lengths,
        }
    )[list(MANIFEST_COLUMNS)]
    signs = [f"s{k}" for k in range(max(labels) + 1)]
    return PreparedStore("memory", values, row_splits, manifest, signs, {"max_len": max_len})


@pytest.fixture(scope="module")
def fake():
    rng = np.random.default_rng(0)
    n = 40
    return _fake_store(
        lengths=rng.integers(1, 30, n), labels=np.arange(n) % 4, participants=(np.arange(n) // 4) % 5
    )


def _ids(landmarks):
    """Sequence index of each padded sample (from its first frame)."""
    return landmarks.numpy()[:, 0, 0, 0].astype(int) - 1


def test_eval_batches(fake):
    indices = np.array([5, 0, 39, 12, 7, 3, 22])
    dataset = pipeline.make_eval_dataset(fake, indices, global_batch_size=3, max_len=20)
    spec_inputs, spec_labels = dataset.element_spec
    assert spec_inputs["landmarks"].shape.as_list() == [None, 20, 100, 3]
    assert spec_inputs["padding_mask"].dtype == tf.float32 and spec_labels.dtype == tf.int32
    batches = list(dataset)
    assert [len(b[1]) for b in batches] == [3, 3, 1]
    landmarks = np.concatenate([b[0]["landmarks"].numpy() for b in batches])
    mask = np.concatenate([b[0]["padding_mask"].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    np.testing.assert_array_equal(labels, fake.labels[indices])
    for row, i in enumerate(indices):
        length = min(fake.lengths[i], 20)  # longer sequences keep their first 20 frames
        np.testing.assert_array_equal(mask[row], np.arange(20) < length)
        assert (landmarks[row, :length] == i + 1).all() and (landmarks[row, length:] == 0).all()
    static = pipeline.make_eval_dataset(fake, indices, 3, 20, drop_remainder=True)
    assert static.element_spec[0]["landmarks"].shape.as_list() == [3, 20, 100, 3]
    assert len(list(static)) == 2


def test_train_epochs_are_seeded_permutations(fake):
    indices = np.arange(3, 39)  # 36 samples
    def epochs(seed, passes=3, counter=None):
        dataset = pipeline.make_train_dataset(
            fake, indices, global_batch_size=6, max_len=25, seed=seed, drop_remainder=False,
            epoch_counter=counter,
        )
        return [np.concatenate([_ids(x["student"]["landmarks"]) for x, _ in dataset]) for _ in range(passes)]

    a = epochs(seed=3)
    for order in a:
        np.testing.assert_array_equal(np.sort(order), indices)
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])
    b = epochs(seed=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(epochs(seed=4, passes=1)[0], a[0])
    # Resuming at epoch 2 replays epoch 2; the counter advances once per pass.
    counter = pipeline.make_epoch_counter(2)
    np.testing.assert_array_equal(epochs(seed=3, passes=1, counter=counter)[0], a[2])
    assert int(counter.numpy()) == 3


def test_train_batches_without_augmenter(fake):
    dataset = pipeline.make_train_dataset(fake, np.arange(40), global_batch_size=8, max_len=12, seed=0)
    inputs, labels = dataset.element_spec
    assert set(inputs) == {"student", "teacher", "distilled"}
    for view in inputs.values():
        assert view["landmarks"].shape.as_list() == [8, 12, 100, 3]
        assert view["padding_mask"].shape.as_list() == [8, 12]
    assert labels.shape.as_list() == [8] and labels.dtype == tf.int32
    x, y = next(iter(dataset))
    ids = _ids(x["student"]["landmarks"])
    np.testing.assert_array_equal(y.numpy(), fake.labels[ids])
    for name in ("teacher", "distilled"):  # no augmenter: identical views
        np.testing.assert_array_equal(x[name]["landmarks"], x["student"]["landmarks"])
    mask = x["student"]["padding_mask"].numpy()
    np.testing.assert_array_equal(mask.sum(1), np.minimum(fake.lengths[ids], 12))
    one = pipeline.make_train_dataset(fake, np.arange(39), 8, 12, seed=0, num_views=1)
    assert set(one.element_spec[0]) == {"student"}
    assert len(list(one)) == one.cardinality() == 4  # remainder dropped by default
    kept = pipeline.make_train_dataset(fake, np.arange(39), 8, 12, seed=0, drop_remainder=False)
    assert len(list(kept)) == kept.cardinality() == 5
    forever = pipeline.make_train_dataset(fake, np.arange(39), 8, 12, seed=0, repeat=True)
    assert forever.cardinality() == tf.data.INFINITE_CARDINALITY


def _recording_augmenter(x, partner, seed):
    """Output [3, 100, 3]: the sample id, the partner id and the seed (mod 2^16) as values."""
    row = lambda v: tf.fill([1, 100, 3], tf.cast(v, tf.float32))
    return tf.concat(
        [row(x[0, 0, 0]), row(partner[0, 0, 0]), row(seed[0] % 65536 + 0 * seed[1])], axis=0
    )


class _PhaseRecorder:
    """Stand-in augmenter whose output says its phase: [1, 100, 3] filled with 10 * phase +
    the sample id's first value; phase 2 from epoch 2 on."""

    def phase_of_epoch(self, epoch, epochs):
        return tf.where(epoch >= 2, 2, 1)

    def __call__(self, x, partner, seed, phase=None):
        return tf.fill([1, 100, 3], x[0, 0, 0] + 100.0 * tf.cast(phase, tf.float32))


def test_one_iterator_runs_every_epoch_with_the_epoch_as_data(fake):
    """`repeat`: one iterator gives exactly the per-pass epochs, and each element keeps its
    own epoch's phase even though prefetching runs ahead across the boundaries."""
    indices = np.arange(3, 39)  # 36 samples, batches of 8: 4 batches an epoch, 4 dropped

    def batches(dataset):
        return [x["student"]["landmarks"].numpy()[:, 0, 0, 0] for x, _ in dataset]

    def make(counter, repeat):
        return pipeline.make_train_dataset(
            fake, indices, 8, 25, seed=5, augmenter=_PhaseRecorder(), epoch_counter=counter,
            repeat=repeat, epochs=5,
        )

    per_pass = {}
    for epoch in range(1, 5):
        per_pass[epoch] = batches(make(pipeline.make_epoch_counter(epoch), repeat=False))
        assert len(per_pass[epoch]) == 4
        assert (np.concatenate(per_pass[epoch]) // 100 == (2 if epoch >= 2 else 1)).all()
    assert not np.array_equal(per_pass[1], per_pass[2])
    counter = pipeline.make_epoch_counter(1)  # a run resumed at epoch 1
    iterator = iter(make(counter, repeat=True))
    first = next(iterator)[0]["student"]["landmarks"].numpy()[:, 0, 0, 0]
    counter.assign(0)  # read once, when the iterator started
    rest = [x["student"]["landmarks"].numpy()[:, 0, 0, 0] for x, _ in iterator]
    expected = np.concatenate([per_pass[e] for e in range(1, 5)])
    np.testing.assert_array_equal(np.stack([first] + rest), expected)  # and ends at epochs
    forever = make(pipeline.make_epoch_counter(), repeat=True)
    assert forever.cardinality() == tf.data.UNKNOWN_CARDINALITY  # Keras keeps its iterator
    with pytest.raises(ValueError, match="phase_of_epoch"):
        pipeline.make_train_dataset(fake, indices, 8, 25, seed=5, augmenter=_recording_augmenter,
                                    epochs=5)


def test_views_get_independent_seeds_and_other_signer_partners(fake):
    dataset = pipeline.make_train_dataset(
        fake, np.arange(40), 10, 25, seed=11, augmenter=_recording_augmenter,
        cutmix_other_signer=True,
    )
    records = {}
    for x, y in dataset:
        for name, view in x.items():
            values = view["landmarks"].numpy()[:, :3, 0, 0]
            assert (view["padding_mask"].numpy().sum(1) == 3).all()
            for sample, partner, seed in values.astype(int):
                records.setdefault(sample - 1, {})[name] = (partner - 1, seed)
    assert len(records) == 40
    participants = fake.manifest["participant_id"].to_numpy()
    for sample, views in records.items():
        seeds = [seed for _, seed in views.values()]
        assert len(set(seeds)) == 3  # each view its own draw
        for partner, _ in views.values():
            assert fake.labels[partner] == fake.labels[sample]
            assert participants[partner] != participants[sample]
    # Same seed, same everything; seeds do not depend on the batch size.
    again = pipeline.make_train_dataset(fake, np.arange(40), 4, 25, seed=11, augmenter=_recording_augmenter,
                                        cutmix_other_signer=True)
    for x, _ in again:
        values = x["teacher"]["landmarks"].numpy()[:, :3, 0, 0].astype(int)
        for sample, partner, seed in values:
            assert records[sample - 1]["teacher"] == (partner - 1, seed)


def test_by_default_partners_are_any_clip_of_the_sign_itself_included(fake):
    dataset = pipeline.make_train_dataset(
        fake, np.arange(40), 10, 25, seed=3, augmenter=_recording_augmenter, repeat=True
    )
    participants = fake.manifest["participant_id"].to_numpy()
    partners = {}
    for x, _ in dataset.take(20):
        for view in x.values():
            for sample, partner, _ in view["landmarks"].numpy()[:, :3, 0, 0].astype(int):
                partners.setdefault(sample - 1, set()).add(partner - 1)
    drawn = [(sample, partner) for sample, found in partners.items() for partner in found]
    assert all(fake.labels[p] == fake.labels[s] for s, p in drawn)
    assert any(p == s for s, p in drawn)  # the clip itself
    assert any(p != s and participants[p] == participants[s] for s, p in drawn)  # its signer
    assert any(participants[p] != participants[s] for s, p in drawn)
    # Every one of a sign's 10 clips is a candidate.
    assert max(len(found) for found in partners.values()) > 6


def test_other_signer_partner_falls_back_to_the_same_signer_then_to_itself():
    store = _fake_store(lengths=[3] * 5, labels=[0, 0, 0, 1, 2], participants=[7, 7, 8, 9, 9])
    # Restricted to indices 0, 1, 3, 4: sign 0 is only signer 7's, sign 1 has one sample.
    dataset = pipeline.make_train_dataset(
        store, [0, 1, 3, 4], 4, 5, seed=0, augmenter=_recording_augmenter, repeat=True,
        cutmix_other_signer=True,
    )
    partners = {0: set(), 1: set(), 3: set(), 4: set()}
    for x, _ in dataset.take(20):
        for view in x.values():
            for sample, partner, _ in view["landmarks"].numpy()[:, :3, 0, 0].astype(int):
                partners[sample - 1].add(partner - 1)
    assert partners[0] <= {0, 1} and partners[1] <= {0, 1} and len(partners[0] | partners[1]) == 2
    assert partners[3] == {3} and partners[4] == {4}  # never a partner outside the subset
    order, start, size, own, own_size = pipeline.partner_tables(
        [0, 0, 1, 2], [7, 7, 9, 9], other_signer=True
    )
    np.testing.assert_array_equal(size, [2, 2, 1, 1])
    np.testing.assert_array_equal(own_size, [0, 0, 0, 0])


def test_partner_tables_match_brute_force():
    rng = np.random.default_rng(5)
    labels, participants = rng.integers(0, 6, 200), rng.integers(0, 7, 200)
    tables = {
        other: pipeline.partner_tables(labels, participants, other_signer=other)
        for other in (False, True)
    }
    for i in range(200):
        others = {j for j in range(200) if labels[j] == labels[i] and participants[j] != participants[i]}
        same_sign = {j for j in range(200) if labels[j] == labels[i]}
        for other, (order, start, size, own, own_size) in tables.items():
            candidates = set(order[start[i] : start[i] + size[i]]) - set(order[own[i] : own[i] + own_size[i]])
            assert candidates == ((others or same_sign) if other else same_sign)


def test_augmenter_output_is_cut_and_padded(fake):
    long = lambda x, partner, seed: tf.tile(x, [3, 1, 1])  # even a (bad) lengthening augmenter
    dataset = pipeline.make_train_dataset(fake, np.arange(40), 8, 10, seed=0, augmenter=long)
    x, _ = next(iter(dataset))
    assert x["student"]["landmarks"].shape == (8, 10, 100, 3)
    ids = _ids(x["student"]["landmarks"])
    np.testing.assert_array_equal(x["student"]["padding_mask"].numpy().sum(1), np.minimum(3 * fake.lengths[ids], 10))


@pytest.mark.large  # traces the real augmenter in the pipeline
def test_with_the_real_augmenter(synthetic_store):
    from tfislr.augment import Augmenter

    indices = np.arange(len(synthetic_store))
    make = lambda: pipeline.make_train_dataset(
        synthetic_store, indices, 16, 25, seed=2, augmenter=Augmenter()
    )
    first = [next(iter(make())) for _ in range(2)]
    (x, y), (x2, y2) = first
    np.testing.assert_array_equal(y, y2)
    for name in pipeline.VIEW_NAMES:
        landmarks, mask = x[name]["landmarks"].numpy(), x[name]["padding_mask"].numpy()
        assert landmarks.shape == (16, 25, 100, 3) and np.isfinite(landmarks).all()
        assert ((landmarks != 0).any(axis=(2, 3)) <= (mask > 0)).all()  # nothing in padding
        np.testing.assert_array_equal(landmarks, x2[name]["landmarks"].numpy())  # deterministic
    assert not np.array_equal(x["student"]["landmarks"], x["teacher"]["landmarks"])


@pytest.mark.parametrize("hand_fill", ["original", "missing_frames"])
def test_accelerator_elements_make_the_host_views(synthetic_store, hand_fill):
    """`augment_device="accelerator"` + `augment_views` (what the train step runs) gives
    the host pipeline's batches, over two epochs (phase 1, then phase 2), every step forced
    on half the time."""
    from tfislr.augment import Augmenter
    from tfislr.augment_batch import augment_views
    from tfislr.config import AugmentConfig

    config = AugmentConfig(hand_fill=hand_fill, face_cutmix_p=0.5, hand_fill_p=0.5,
                           crop_p_phase2=0.5, scale_p=0.5)
    indices = np.arange(len(synthetic_store))

    def make(device):
        return pipeline.make_train_dataset(
            synthetic_store, indices, 16, 25, seed=2, augmenter=Augmenter(config), repeat=True,
            epochs=2, augment_device=device)

    views = tf.function(lambda raw: augment_views(raw, pipeline.VIEW_NAMES, hand_fill))
    batches = 0
    for (host, labels), (raw, raw_labels) in zip(make("host"), make("accelerator")):
        np.testing.assert_array_equal(raw_labels, labels)
        assert raw["partner_landmarks"].shape == (16, 3, 25, 100, 3)
        for name, view in views(raw).items():
            np.testing.assert_array_equal(view["padding_mask"], host[name]["padding_mask"])
            np.testing.assert_allclose(view["landmarks"], host[name]["landmarks"], rtol=0,
                                       atol=1e-5, err_msg=name)
        batches += 1
    assert batches == 2 * (len(indices) // 16)


def test_store_lives_in_one_cpu_variable_and_survives_auto_sharding(fake):
    tensors = pipeline.store_tensors(fake)
    assert tensors["values"] is pipeline.store_tensors(fake)["values"]  # shared per store
    assert type(tensors["values"]).__name__ == "ResourceVariable"
    assert "CPU" in tensors["values"].device.upper()
    # Multi-worker distribution rewrites the dataset graph (auto-sharding by element).
    from tensorflow.python.data.experimental.ops import distribute

    dataset = pipeline.make_eval_dataset(fake, np.arange(40), 4, 25)
    shard = distribute._AutoShardDataset(dataset, num_workers=2, index=1)
    ids = np.concatenate([_ids(x["landmarks"]) for x, _ in shard])
    np.testing.assert_array_equal(ids, np.arange(40).reshape(10, 4)[1::2].ravel())


@pytest.mark.extra_large
def test_store_larger_than_the_2gb_graph_limit():
    """A > 2 GiB store must work: a graph constant that big could not be serialized."""
    frames_per_sequence = 2000
    n = int(2.1 * 2**30 / (1200 * frames_per_sequence)) + 1
    store = _fake_store(
        lengths=np.full(n, frames_per_sequence), labels=np.arange(n) % 3, participants=np.arange(n) % 4
    )
    assert store.landmarks.nbytes > 2.1 * 2**30
    last = n - 1
    evaluation = pipeline.make_eval_dataset(store, [last, 0], 2, 25)
    x, _ = next(iter(evaluation))
    np.testing.assert_array_equal(_ids(x["landmarks"]), [last, 0])
    from tensorflow.python.data.experimental.ops import distribute

    train = pipeline.make_train_dataset(store, np.arange(n), 4, 25, seed=0)
    x, _ = next(iter(distribute._AutoShardDataset(train, num_workers=2, index=0)))
    assert x["student"]["landmarks"].shape == (4, 25, 100, 3)
    assert (x["student"]["padding_mask"].numpy() == 1).all()


def test_argument_errors(fake):
    with pytest.raises(ValueError, match="indices must be in"):
        pipeline.make_eval_dataset(fake, [0, 40], 4, 10)
    with pytest.raises(ValueError, match="batch_size"):
        pipeline.make_eval_dataset(fake, [0], 0, 10)
    with pytest.raises(ValueError, match="max_len"):
        pipeline.make_train_dataset(fake, [0], 4, None, seed=0)
    with pytest.raises(ValueError, match="num_views"):
        pipeline.make_train_dataset(fake, [0], 4, 10, seed=0, num_views=4)
    with pytest.raises(ValueError, match="indices is empty"):
        pipeline.make_train_dataset(fake, [], 4, 10, seed=0)
    with pytest.raises(ValueError, match="1-D integer"):
        pipeline.make_eval_dataset(fake, [0.5], 4, 10)
    with pytest.raises(ValueError, match="augment_device must be one of host, accelerator"):
        pipeline.make_train_dataset(fake, [0], 4, 10, seed=0, augment_device="gpu")
    with pytest.raises(ValueError, match="needs an Augmenter"):
        pipeline.make_train_dataset(fake, [0], 4, 10, seed=0, augment_device="accelerator")


_DISTRIBUTED = textwrap.dedent(
    """
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import sys
    sys.path.insert(0, sys.argv[1])
    from test_pipeline import _fake_store
    from tfislr.data import pipeline
    rng = np.random.default_rng(0)
    store = _fake_store(rng.integers(1, 15, 36), np.arange(36) % 3, np.arange(36) % 4)
    shift = lambda x, partner, seed: x[1:] + partner[:1] * 0  # a crop-like stand-in augmenter
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():  # built inside the scope on purpose
        train_counter = pipeline.make_epoch_counter()
        train = pipeline.make_train_dataset(
            store, np.arange(len(store)), 8, 10, seed=0, augmenter=shift, epoch_counter=train_counter
        )
        evaluation = pipeline.make_eval_dataset(store, np.arange(len(store)), 8, 10)
    values = pipeline.store_tensors(store)["values"]
    assert type(values).__name__ == "ResourceVariable", type(values)
    assert type(train_counter).__name__ == "ResourceVariable", type(train_counter)
    assert "cpu" in values.device.lower()
    batches = list(strategy.experimental_distribute_dataset(train))
    assert len(batches) == len(store) // 8
    first = batches[0][0]["teacher"]["landmarks"]
    shapes = [t.shape.as_list() for t in strategy.experimental_local_results(first)]
    assert shapes == [[4, 10, 100, 3], [4, 10, 100, 3]], shapes
    with strategy.scope():
        inputs = {"landmarks": keras.Input((10, 100, 3)), "padding_mask": keras.Input((10,))}
        hidden = keras.layers.Flatten()(inputs["landmarks"])
        model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    student = train.map(lambda x, y: (x["student"], y))
    history = model.fit(student, epochs=2, verbose=0)
    assert int(train_counter.numpy()) >= 2  # one pass per epoch
    model.evaluate(evaluation, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    print("DISTRIBUTED OK")
    """
)


@pytest.mark.large  # a subprocess that fits a model
def test_distributed_dataset_and_keras_fit():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-c", _DISTRIBUTED, os.path.dirname(__file__)], env=env, capture_output=True,
        text=True, timeout=300,
    )
    assert "DISTRIBUTED OK" in result.stdout, result.stderr[-3000:]
