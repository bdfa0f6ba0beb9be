"""Drawing the per-step manifold-mixup parameters (docs/recipe.md §10) with stateless random ops.

The model mixes hidden states (`model(inputs, mixup={"lambda", "permutation", "layer"})`);
this module only decides *which groups* of a batch are mixed and draws λ, the permutation
and the layer indices. Everything is a pure function of an int `[2]` seed, so a step is
reproducible from (run seed, step counter) — no Python-side state, and no dependence on
how many replicas share the global batch.

A clip that is not mixed gets λ = 1 and permutes to itself: the model's mix
λ·h + (1 − λ)·h[perm] and the mask union are then exact no-ops, so the graph has no
branch around the model calls.

λ ~ Beta(a, b) = X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b). TF's
`stateless_gamma` has no XLA kernel, so the gammas are drawn here with Marsaglia–Tsang's
squeeze method from normal and uniform draws only (fixed number of proposals, no loop),
which also compiles under `jit_compile=True`.
"""

import tensorflow as tf

# Proposals per Marsaglia–Tsang draw. Acceptance is ≥ 0.95 for shape ≥ 1, so 12
# proposals all fail with probability < 1e-15; a draw that still fails takes the mean.
_PROPOSALS = 12


def stateless_log_gamma(shape, alpha, seed):
    """log of Gamma(alpha, 1) samples, float32, from the int `[2]` `seed` (XLA-compatible).

    Marsaglia & Tsang (2000) for shape α + 1 ≥ 1, then the boost
    Gamma(α) = Gamma(α + 1) · U^(1/α), kept in log space so small α cannot underflow.
    """
    if alpha <= 0:
        raise ValueError(f"gamma shape must be > 0, got {alpha}")
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, num=3))
    shape = tf.concat([tf.reshape(shape, [-1]), [_PROPOSALS]], axis=0)
    boosted = alpha + 1.0
    d = boosted - 1.0 / 3.0
    c = 1.0 / tf.sqrt(9.0 * d)
    x = tf.random.stateless_normal(shape, seeds[0])
    v = (1.0 + c * x) ** 3
    u = tf.random.stateless_uniform(shape, seeds[1], minval=1e-12, maxval=1.0)
    safe_v = tf.maximum(v, 1e-12)
    accepted = (v > 0) & (tf.math.log(u) < 0.5 * x * x + d - d * safe_v + d * tf.math.log(safe_v))
    # The first accepted proposal of each draw (_PROPOSALS when none is, then unused): a
    # min over indices, exact on every device (an int32 ArgMax has no GPU kernel, and
    # TF leaves argmax's choice among ties open).
    first = tf.reduce_min(tf.where(accepted, tf.range(_PROPOSALS), _PROPOSALS), axis=-1)
    chosen = tf.reduce_sum(safe_v * tf.one_hot(first, _PROPOSALS, dtype=safe_v.dtype), axis=-1)
    log_sample = tf.math.log(d * chosen)
    log_sample = tf.where(tf.reduce_any(accepted, axis=-1), log_sample, tf.math.log(d))
    boost = tf.random.stateless_uniform(shape[:-1], seeds[2], minval=1e-12, maxval=1.0)
    return log_sample + tf.math.log(boost) / alpha


def stateless_beta(shape, alpha, beta, seed):
    """Beta(alpha, beta) samples in [0, 1] as X / (X + Y) of two gammas (float32)."""
    seed_x, seed_y = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    log_x = stateless_log_gamma(shape, alpha, seed_x)
    log_y = stateless_log_gamma(shape, beta, seed_y)
    # X / (X + Y) = sigmoid(log X − log Y), exact and overflow-free.
    return tf.sigmoid(log_x - log_y)


def draw_mixup(
    per_replica_batch_size, probability, alpha, num_layers, num_models, seed,
    group_size=None, replica=0, replicas=1,
):
    """Draws one step's mixup for this replica's clips, group by group.

    The global batch (`replicas × per_replica_batch_size` clips, replica r holding clips
    r·B … (r + 1)·B − 1) is cut into groups of `group_size` clips, the original's per-GPU
    batch (docs/recipe.md §10). Each group draws on its own whether it is mixed, one
    permutation of its clips and one layer index per model; every clip draws its own λ.
    The draws depend only on `seed` and the clip's place in the global batch, so the same
    global batch is mixed the same way on any replica count.

    Args:
        per_replica_batch_size: int or scalar int tensor B, a multiple of `group_size`.
        probability: scalar, chance that a group is mixed.
        alpha: Beta(alpha, alpha) parameter of the per-clip λ (0.4).
        num_layers: layers are drawn uniformly in [0, num_layers).
        num_models: how many layer indices to draw per group (one per model).
        seed: int32/int64 `[2]`, the same on every replica.
        group_size: clips per group; None: one group per replica.
        replica, replicas: this replica's id (int or scalar tensor) and the replica count.

    Returns:
        `(applied bool[B], λ f32[B], permutation int32[B], layers int32[num_models, B])`
        for this replica's clips. An unmixed clip has λ = 1 and permutes to itself, so the
        model's mix is an exact no-op for it; `permutation` indexes this replica's batch.
    """
    batch = tf.cast(per_replica_batch_size, tf.int32)
    # One group per replica without a group size (at least 1 clip wide, for an empty batch).
    group = tf.maximum(batch, 1) if group_size is None else tf.constant(group_size, tf.int32)
    total = batch * replicas
    num_groups = total // group
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, num=4))
    probability = tf.cast(probability, tf.float32)
    applied = tf.random.stateless_uniform([num_groups], seeds[0]) < probability
    lam = stateless_beta([total], alpha, alpha, seeds[1])
    keys = tf.random.stateless_uniform(tf.stack([num_groups, group]), seeds[2])
    within = tf.cast(tf.argsort(keys, axis=-1), tf.int32)  # a permutation of each group
    permutation = tf.reshape(within + tf.range(num_groups)[:, None] * group, [-1])
    layers = tf.random.stateless_uniform(
        tf.stack([num_groups, num_models]), seeds[3], minval=0, maxval=num_layers, dtype=tf.int32
    )
    # This replica's clips and, for each, its group.
    start = tf.cast(replica, tf.int32) * batch
    clips = start + tf.range(batch)
    group_of = clips // group
    applied = tf.gather(applied, group_of)
    lam = tf.where(applied, tf.gather(lam, clips), 1.0)
    permutation = tf.where(applied, tf.gather(permutation, clips), clips) - start
    # [B, models] -> [models, B] by unstack/stack: the same values as a transpose, but an
    # int32 Transpose makes TF's oneDNN pass log "oneDNN supports DT_INT32 only on platforms
    # with AVX-512" (E0000) on CPUs without it (docs/troubleshooting.md).
    layers = tf.stack(tf.unstack(tf.gather(layers, group_of), num=num_models, axis=1))
    return applied, lam, permutation, layers
