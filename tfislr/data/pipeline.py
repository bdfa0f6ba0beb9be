"""tf.data pipelines from a prepared store to padded model batches.

Both pipelines yield Keras-hub style dicts, padded at the end to `max_len` (as the
original did) with a float mask:

    {"landmarks": float32 [B, max_len, 100, 3], "padding_mask": float32 [B, max_len]}

(1 = real frame, 0 = padding; padded frames are all-zero), and int32 labels `[B]`.
A stored sequence longer than `max_len` (a store prepared for a larger max_len) keeps its
first `max_len` frames.

**Where the data lives.** The store's flat values (several GB for the full competition
set) are copied once into a CPU resource variable, shared by every dataset built from the
same `PreparedStore` object; each element gathers its rows from it. A variable, unlike a
tensor captured by a dataset function, is not serialized into the graph, so there is no
2 GB GraphDef limit. It is created outside any distribution strategy (a variable made under
`MirroredStrategy.scope()` would be copied to every device), so the datasets can be built
inside or outside a strategy scope and distributed with
`strategy.experimental_distribute_dataset` or by `keras.Model.fit`.

**Training** (`make_train_dataset`): every epoch has its own permutation of `indices` (a
stateless shuffle seeded by `(seed, epoch)`, so no shuffle buffer: the order is a true
permutation). The epoch number comes from `epoch_counter`, an int64 variable; set it (e.g.
to Keras' `initial_epoch`) to resume a run with the same orders and augmentations. Without
`repeat`, each pass over the dataset is one epoch: it reads and increments the counter.
With `repeat`, ONE iterator runs every epoch, `counter, counter + 1, ...` (read once, when
the iterator starts): the epoch travels with each element as data, so the order, the seeds
and (given `epochs`) the augmenter's phase of an element are those of its own epoch even
when prefetching runs ahead into the next one. That is what training uses (Keras `fit` with
`steps_per_epoch`): a new iterator per epoch costs seconds (tf.data optimizes and
instantiates the whole pipeline again, and the step waits for its first batch). Each sample yields
`num_views` views (student, teacher, distilled), each augmented independently: view `v` of
sample `i` in epoch `e` uses the stateless seed derived from `(seed, e, i, v)`, whatever
the order, batch or number of parallel calls. Each view also draws its own face-CutMix
partner: a random clip of the same sign among `indices`, the clip itself included, as the
original's code drew it; with `cutmix_other_signer=True` only clips of other participants
(all clips of the sign when no other participant has it). With `augmenter=None` the views
are the same unaugmented sequence.

Batch sizes here are GLOBAL (all replicas together; a distribution strategy splits each
batch); `tfislr.training.batch_plan` derives them from the config.
"""

import weakref

import numpy as np
import tensorflow as tf

from tfislr import landmarks as lm
from tfislr.checks import check_int
from tfislr.augment import STEPS
from tfislr.config import AUGMENT_DEVICES, MODEL_NAMES

VIEW_NAMES = MODEL_NAMES  # one view of a batch per model

_TENSORS = weakref.WeakKeyDictionary()


def _plain_variable(value, name, dtype=None):
    """A CPU variable that is never mirrored, even inside a distribution strategy's scope."""
    try:
        from tensorflow.python.ops.resource_variable_ops import ResourceVariable
    except ImportError:  # pragma: no cover - layout of TF internals changed
        ResourceVariable = tf.Variable
    with tf.init_scope(), tf.device("/cpu:0"):
        # Calling the subclass directly skips the variable-creator stack, which is where a
        # strategy scope would turn the variable into a distributed one.
        return ResourceVariable(
            tf.convert_to_tensor(value, dtype=dtype), trainable=False, name=name
        )


def store_tensors(store):
    """The store's values, row splits and labels as (cached) TF objects."""
    cached = _TENSORS.get(store)
    if cached is None:
        cached = {
            "values": _plain_variable(np.asarray(store.landmarks, np.float32), "store_values"),
            "row_splits": tf.constant(np.asarray(store.row_splits, np.int64)),
            "labels": tf.constant(store.labels, tf.int32),
        }
        _TENSORS[store] = cached
    return cached


def _check(store, indices, global_batch_size, max_len):
    indices = np.asarray(indices)
    if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
        raise ValueError(f"indices must be a 1-D integer array, got {indices.dtype} {indices.shape}")
    indices = indices.astype(np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= len(store)):
        raise ValueError(f"indices must be in [0, {len(store)}), got {indices.min()}..{indices.max()}")
    check_int("global_batch_size", global_batch_size)
    check_int("max_len", max_len)
    return indices


def _options():
    options = tf.data.Options()
    # Elements are generated, not read from files: split by element across workers.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return options


def _pad(sequence, max_len):
    """[T, 100, 3] → ([max_len, 100, 3] zero-padded or cut, float mask [max_len])."""
    sequence = sequence[:max_len]
    length = tf.shape(sequence)[0]
    padded = tf.pad(sequence, [[0, max_len - length], [0, 0], [0, 0]])
    padded = tf.ensure_shape(padded, [max_len, lm.NUM_POINTS, lm.NUM_COORDINATES])
    return {"landmarks": padded, "padding_mask": tf.sequence_mask(length, max_len, tf.float32)}


def make_eval_dataset(store, indices, global_batch_size, max_len, drop_remainder=False):
    """Deterministic, unaugmented batches of `store[indices]` in the given order.

    Yields `({"landmarks": [B, max_len, 100, 3], "padding_mask": [B, max_len]}, labels [B])`;
    the last batch is smaller unless `drop_remainder`. Rows are gathered a whole batch
    at a time.
    """
    indices = _check(store, indices, global_batch_size, max_len)
    tensors = store_tensors(store)
    values, row_splits, labels = tensors["values"], tensors["row_splits"], tensors["labels"]

    def gather(batch):
        landmarks, lengths = _gather_padded(values, row_splits, batch, max_len)
        mask = tf.sequence_mask(lengths, max_len, tf.float32)
        return {"landmarks": landmarks, "padding_mask": mask}, tf.gather(labels, batch)

    dataset = tf.data.Dataset.from_tensor_slices(indices)
    dataset = dataset.batch(global_batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options())


def _gather_padded(values, row_splits, indices, max_len):
    """The store's sequences `indices` int64 `[N]` (-1 = none: no frame) in one read:
    `([N, max_len, 100, 3]` zero-padded or cut, int64 lengths `[N])`."""
    safe = tf.maximum(indices, 0)
    starts = tf.gather(row_splits, safe)
    lengths = tf.minimum(tf.gather(row_splits, safe + 1) - starts, max_len)
    lengths = tf.where(indices >= 0, lengths, 0)
    rows = tf.ragged.range(starts, starts + lengths)
    ragged = tf.RaggedTensor.from_row_splits(values.sparse_read(rows.flat_values), rows.row_splits)
    return ragged.to_tensor(shape=[None, max_len, lm.NUM_POINTS, lm.NUM_COORDINATES]), lengths


def partner_tables(labels, participants, other_signer=False):
    """Per position of a training subset: where to draw a face-CutMix partner.

    Positions are sorted by (label, participant); position `i` draws from `order[start:
    start + size]` (its sign's run, itself included) skipping `order[own: own + own_size]`.
    That skipped run is empty by default; with `other_signer` it is the clip's own
    participant's run (still empty when no other participant has the sign). Returns int64
    arrays (order, start, size, own, own_size).
    """
    labels = np.asarray(labels, np.int64)
    participants = np.asarray(participants, np.int64)
    n = len(labels)
    order = np.lexsort((participants, labels))
    sorted_labels, sorted_participants = labels[order], participants[order]
    new_sign = np.r_[True, sorted_labels[1:] != sorted_labels[:-1]]
    new_pair = new_sign | np.r_[True, sorted_participants[1:] != sorted_participants[:-1]]

    def runs(boundaries):
        starts = np.flatnonzero(boundaries)
        sizes = np.diff(np.r_[starts, n])
        run_of = np.cumsum(boundaries) - 1
        return starts[run_of], sizes[run_of]

    sign_start, sign_size = runs(new_sign)
    own_start, own_size = runs(new_pair)
    # Nothing to skip: any clip of the sign, or the sign has no other participant.
    skip_nothing = np.full(n, not other_signer) | (own_size == sign_size)
    own_size = np.where(skip_nothing, 0, own_size)
    own_start = np.where(skip_nothing, sign_start, own_start)
    # Back from sorted rank to subset position.
    inverse = np.empty(n, np.int64)
    inverse[order] = np.arange(n)
    return (
        order.astype(np.int64),
        sign_start[inverse].astype(np.int64),
        sign_size[inverse].astype(np.int64),
        own_start[inverse].astype(np.int64),
        own_size[inverse].astype(np.int64),
    )


def make_epoch_counter(initial_epoch=0):
    """An int64 CPU variable counting passes over a training dataset (never mirrored)."""
    return _plain_variable(np.int64(initial_epoch), "epoch_counter", tf.int64)


def make_train_dataset(
    store,
    indices,
    global_batch_size,
    max_len,
    seed,
    augmenter=None,
    num_views=3,
    drop_remainder=True,
    epoch_counter=None,
    repeat=False,
    cutmix_other_signer=False,
    epochs=None,
    augment_device="host",
):
    """Shuffled, augmented training batches of `store[indices]`.

    Args:
        store: a `PreparedStore`.
        indices: positions in the store of the training sequences.
        global_batch_size: clips per batch, all replicas together (a distribution
            strategy splits it).
        max_len: frames per padded view.
        seed: int; fixes the orders, the augmentations and the partners.
        augmenter: callable `(landmarks [T,100,3], partner [T2,100,3], seed int32 [2]) ->
            [T',100,3]` with `T' <= T`, graph-safe (e.g. `tfislr.augment.Augmenter`), or None.
            With `epochs`, it is also passed `phase=augmenter.phase_of_epoch(epoch, epochs)`.
            An augmenter with a `views` method (`Augmenter.views`) is given all views of a
            clip at once, its partners as callables read only when used.
        num_views: 1..3 views, named `VIEW_NAMES[:num_views]`.
        drop_remainder: drop the last incomplete batch of each epoch (static batch size).
        epoch_counter: int64 variable from `make_epoch_counter`. Without `repeat` each
            pass uses its value and increments it; with `repeat` the iterator's first epoch
            is its value when the iterator starts (the variable is left unchanged).
            Default: a new counter starting at 0.
        repeat: one iterator for every epoch (module docstring), for `fit` with
            `steps_per_epoch`: the epochs from the counter up to `epochs` (excluded), or
            forever without `epochs`.
        cutmix_other_signer: draw face-CutMix partners from other participants only
            (`AugmentConfig.face_cutmix_other_signer`); default any clip of the sign.
        epochs: total epochs of the run, or None. Ends a `repeat` dataset after the last
            epoch and makes each element's augmenter phase that of its own epoch
            (the augmenter then needs `phase_of_epoch`, as `Augmenter` has); without it
            the augmenter reads its own phase (variable) when the element is made.
        augment_device: "host" augments here; "accelerator" (needs an `Augmenter`) leaves
            the augmentation to the train step (`tfislr.augment_batch.augment_views`): each
            element is then the clip padded (a clip longer than max_len cut first), each
            view's parameters (`Augmenter.view_parameters`) and CutMix partner (only where
            its CutMix fires, else zeros of length 0), a batch read in one gather.

    Yields:
        `({view: {"landmarks": [B, max_len, 100, 3], "padding_mask": [B, max_len]}}, labels [B])`;
        with `augment_device="accelerator"`, `(raw, labels [B])`, `raw` the dict of
        `tfislr.augment_batch.RAW_KEYS` that `augment_views` takes (V = num_views).
    """
    indices = _check_train_arguments(store, indices, global_batch_size, max_len, augmenter,
                                     num_views, epochs, augment_device)
    if epoch_counter is None:
        epoch_counter = make_epoch_counter()
    count = len(indices)
    batches = count // global_batch_size if drop_remainder else -(-count // global_batch_size)
    base_seed = tf.constant([int(seed) & 0x7FFFFFFF, 0], tf.int64)
    element = _element_fn(store, indices, max_len, base_seed, augmenter,
                          VIEW_NAMES[:num_views], cutmix_other_signer, epochs, augment_device)

    def one_epoch(epoch):
        keys = tf.random.stateless_uniform([count], seed=base_seed + tf.stack([0, epoch]))
        positions = tf.argsort(keys)
        if drop_remainder:  # never batched: not augmented either
            positions = positions[: batches * global_batch_size]
        dataset = tf.data.Dataset.from_tensor_slices((positions, tf.fill(tf.shape(positions), epoch)))
        dataset = dataset.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        # Batched per epoch: no batch mixes two epochs.
        return dataset.batch(global_batch_size, drop_remainder=drop_remainder)

    dataset = _over_epochs(one_epoch, epoch_counter, repeat, epochs, batches)
    if augment_device == "accelerator":  # the clips and partners of a batch, in one read
        dataset = dataset.map(_raw_batch_fn(store, max_len), num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options())


def _check_train_arguments(store, indices, global_batch_size, max_len, augmenter, num_views,
                           epochs, augment_device="host"):
    """`make_train_dataset`'s argument checks; returns the indices as `_check` does.

    Raises:
        ValueError: a bad value, named.
    """
    indices = _check(store, indices, global_batch_size, max_len)
    if not 1 <= num_views <= len(VIEW_NAMES):
        raise ValueError(f"num_views must be 1..{len(VIEW_NAMES)}, got {num_views}")
    if len(indices) == 0:
        raise ValueError("indices is empty: nothing to train on")
    if augmenter is not None and not callable(augmenter):
        raise ValueError("augmenter must be callable (landmarks, partner, seed) -> landmarks")
    if epochs is not None:
        check_int("epochs", epochs)
        if augmenter is not None and not hasattr(augmenter, "phase_of_epoch"):
            raise ValueError("with epochs, the augmenter needs phase_of_epoch(epoch, epochs)")
    if augment_device not in AUGMENT_DEVICES:
        raise ValueError(f"augment_device must be one of {', '.join(AUGMENT_DEVICES)}, "
                         f"got {augment_device!r}")
    if augment_device == "accelerator" and not hasattr(augmenter, "view_parameters"):
        raise ValueError("augment_device='accelerator' needs an Augmenter (view_parameters)")
    return indices


def _over_epochs(one_epoch, epoch_counter, repeat, epochs, batches):
    """The batches of `one_epoch(epoch)` over the epochs `make_train_dataset` describes:
    with `repeat`, every epoch from the counter's value on (up to `epochs`, or forever);
    without, one pass per iterator, which reads and bumps the counter."""
    if repeat:
        # The first epoch is read when the iterator starts; the others follow as data.
        last = tf.constant(np.iinfo(np.int64).max if epochs is None else int(epochs), tf.int64)
        dataset = tf.data.Dataset.range(1).map(lambda _: epoch_counter.read_value())
        dataset = dataset.flat_map(lambda first: tf.data.Dataset.range(first, last))
        dataset = dataset.flat_map(one_epoch)
        if epochs is None:  # flat_map hides that it never ends
            dataset = dataset.apply(
                tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY)
            )
        return dataset
    # One element per pass: reads and bumps the counter when the pass starts.
    dataset = tf.data.Dataset.range(1).map(lambda _: epoch_counter.assign_add(1) - 1)
    dataset = dataset.flat_map(one_epoch)
    # flat_map hides the length; state it so Keras knows the steps per epoch up front.
    return dataset.apply(tf.data.experimental.assert_cardinality(batches))


def _element_fn(store, indices, max_len, base_seed, augmenter, names, cutmix_other_signer,
                epochs=None, augment_device="host"):
    """The per-sample map of `make_train_dataset`: `(position int64 [], epoch int64 []) ->
    ({view: {"landmarks": [max_len, 100, 3], "padding_mask": [max_len]}}, label int32 [])`
    for the clip `store[indices[position]]`, its views seeded by `(base_seed, epoch, index)`
    (and, given `epochs`, augmented in the phase of `epoch`); with `augment_device=
    "accelerator"`, the raw element `make_train_dataset` describes instead of the views.
    """
    tensors = store_tensors(store)
    values, row_splits, labels = tensors["values"], tensors["row_splits"], tensors["labels"]
    subset = tf.constant(indices)

    def sequence(index):
        rows = tf.range(row_splits[index], row_splits[index + 1])
        return values.sparse_read(rows)

    partner = _partner_fn(store, indices, subset, cutmix_other_signer)

    def raw_element(position, epoch):
        """The draws of `make_train_dataset`'s raw element; `_raw_batch_fn` reads the clip
        ("index") and the partners ("partner_index", -1 where CutMix does not fire)."""
        index = subset[position]
        length = tf.minimum(row_splits[index + 1] - row_splits[index], max_len)
        seeds, view_seeds, phase = view_draws(index, epoch)
        parameters = [augmenter.view_parameters(s, length, **phase) for s in view_seeds]
        partners = [
            tf.cond(p["fires"][STEPS.index("face_cutmix")],
                    lambda v=v: partner(position, seeds[len(VIEW_NAMES) + v]),
                    lambda: tf.constant(-1, tf.int64))
            for v, p in enumerate(parameters)
        ]
        raw = {"index": index, "partner_index": tf.stack(partners)}
        raw.update({key: tf.stack([p[key] for p in parameters]) for key in parameters[0]})
        return raw, labels[index]

    def view_draws(index, epoch):
        """(the clip's 2V seeds, its V views' int32 seeds, {"phase": ...} or {})."""
        sample_seed = tf.random.experimental.stateless_fold_in(
            tf.random.experimental.stateless_fold_in(base_seed, epoch), index
        )
        # Fully mixed seeds: views 0..V-1 for the augmenter, V..2V-1 for the partners.
        seeds = tf.random.experimental.stateless_split(sample_seed, num=2 * len(VIEW_NAMES))
        phase = {} if epochs is None else {"phase": augmenter.phase_of_epoch(epoch, epochs)}
        return seeds, [tf.cast(seeds[v], tf.int32) for v in range(len(names))], phase

    def element(position, epoch):
        index = subset[position]
        x = sequence(index)
        if augmenter is None:
            view = _pad(x, max_len)
            views = {name: view for name in names}
        else:
            seeds, view_seeds, phase = view_draws(index, epoch)
            # A partner is read only when needed: by an augmenter with `views` (see
            # `Augmenter.views`), only if that view's CutMix fires.
            partners = [
                lambda v=v: sequence(partner(position, seeds[len(VIEW_NAMES) + v]))
                for v in range(len(names))
            ]
            if hasattr(augmenter, "views"):
                outs = augmenter.views(x, partners, view_seeds, **phase)
            else:
                outs = [augmenter(x, read(), s, **phase) for read, s in zip(partners, view_seeds)]
            views = {name: _pad(out, max_len) for name, out in zip(names, outs)}
        return views, labels[index]

    return raw_element if augment_device == "accelerator" else element


def _raw_batch_fn(store, max_len):
    """The batch map of `make_train_dataset(augment_device="accelerator")`: a batch of
    `raw_element`s with their clips and partners read and padded (`augment_batch.RAW_KEYS`)."""
    tensors = store_tensors(store)
    values, row_splits = tensors["values"], tensors["row_splits"]

    def read(raw, labels):
        raw = dict(raw)
        partner_index = raw.pop("partner_index")  # [B, V]
        landmarks, lengths = _gather_padded(values, row_splits, raw.pop("index"), max_len)
        partners, partner_lengths = _gather_padded(
            values, row_splits, tf.reshape(partner_index, [-1]), max_len)
        views = partner_index.shape[1]
        raw.update({
            "landmarks": landmarks, "length": tf.cast(lengths, tf.int32),
            "partner_landmarks": tf.reshape(
                partners, [-1, views, max_len, lm.NUM_POINTS, lm.NUM_COORDINATES]),
            "partner_length": tf.reshape(tf.cast(partner_lengths, tf.int32), [-1, views]),
        })
        return raw, labels

    return read


def _partner_fn(store, indices, subset, other_signer):
    """`(position int64 [], view_seed int64 [2]) -> store index int64 []`: a face-CutMix
    partner of `store[indices[position]]` drawn from `partner_tables` (same sign; with
    `other_signer`, other participants only)."""
    order, start, size, own, own_size = (
        tf.constant(t)
        for t in partner_tables(
            store.labels[indices], store.manifest["participant_id"].to_numpy()[indices],
            other_signer=other_signer,
        )
    )

    def partner(position, view_seed):
        pool = size[position] - own_size[position]
        draw = tf.random.stateless_uniform(
            [], seed=view_seed, minval=0, maxval=tf.maximum(pool, 1), dtype=tf.int64
        )
        # Skip over the own participant's run, which sits inside the sign's run.
        rank = tf.where(draw >= own[position] - start[position], draw + own_size[position], draw)
        return subset[order[start[position] + tf.minimum(rank, size[position] - 1)]]

    return partner
