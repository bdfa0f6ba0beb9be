"""DeBERTa-v2 style disentangled self-attention and the seed's modified encoder layer.

The original trained HF `DebertaV2Encoder` blocks (transformers 4.22.2) and, for export,
rewrote the attention with raw relative distances. Here one implementation serves both:
the log-bucketed relative positions of `log_bucket_position` are computed from range ops at
run time, so the exported graph computes exactly what was trained, for any sequence length.

Relative-position terms use the Transformer-XL "skew": each query is scored against the
projected table rows of the `2T - 1` distances a length-T sequence has (rows picked with one
small GATHER) and one zero row, then a reshape/slice shifts row i by i so that column j
holds distance i - j. Only builtin TFLite ops, no `[T, T]`-sized gathers and no precomputed
tables. It was chosen by measurement over a `gather` with `batch_dims`, a one-hot matmul
and a `[T * R, B * H]` row layout (`python benchmarks/attention.py --variants`; figures in
benchmarks/README.md). The TFLite export traces the same layers inside `tflite_layout()`,
which picks the same dot products with a row gather whose shapes all follow from the input's: in a
TFLite graph the skew's computed reshapes and slices are per-call dynamic tensors.
"""

import contextlib
import contextvars
import math

import keras
from keras import ops

from tfislr.checks import check_int
from tfislr.model.activations import mish
from tfislr.model.per_frame import leading_dims, per_frame
from tfislr.model.xla_fusion import LayerNormalization

# Large negative logit for masked pairs. Softmax always runs in float32 here (also under
# mixed precision), so a finite float32 value is safe: a fully masked (padded) query row
# becomes uniform, then is zeroed.
_MASKED_LOGIT = -1e9

_TFLITE_LAYOUT = contextvars.ContextVar("tfislr_tflite_layout", default=False)


@contextlib.contextmanager
def tflite_layout():
    """Layers traced inside this context build their TFLite-export graph: same math, other ops.

    In a TFLite graph whose time axis is only known at run time (the export's kept frames),
    every op whose output shape is computed from a tensor's *values* (RANGE, SLICE with
    computed bounds, RESHAPE to a computed shape) produces a dynamic tensor: it is malloc'ed
    on every call and the interpreter re-plans its memory arena after it. The training-time
    skew of the relative-position terms needs ~10 such ops per layer. Inside this context
    `DisentangledSelfAttention` picks its table rows with a gather instead (see
    `_relative_scores_by_rows`), whose shapes all follow from its inputs' shapes. The export
    (`tfislr.export.graph`) traces its serving function inside it; training never does.
    """
    token = _TFLITE_LAYOUT.set(True)
    try:
        yield
    finally:
        _TFLITE_LAYOUT.reset(token)


def select_by_mask(mask, if_one, if_zero):
    """`where(mask > 0, if_one, if_zero)` for a 0/1 float `mask` (broadcasting).

    Inside `tflite_layout()` the same values come from `if_one * mask + if_zero * (1 - mask)`
    (finite operands): TFLite runs SELECT_V2 in its reference kernel, outside XNNPACK.
    """
    if tflite_layout_active():
        return if_one * mask + if_zero * (1.0 - mask)
    return ops.where(mask > 0, if_one, if_zero)


def torch_linear_kernel_initializer():
    """torch.nn.Linear / Conv default kernel init: U(±1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(
        scale=1.0 / 3.0, mode="fan_in", distribution="uniform"
    )


def torch_linear_bias_initializer(fan_in):
    """torch.nn.Linear default bias init: U(±1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


def _log_bucket_thresholds(bucket_size, max_position):
    """Integer distances at which the log bucket grows by one (exact, float64 + rounding).

    For `a = |r| > mid`, HF's bucket is `mid + ceil(v(a))` with
    `v(a) = log(a / mid) / log((max_position - 1) / mid) * (mid - 1)`, and
    `ceil(v(a)) = #{k >= 0 : v(a) > k} = #{k : a > mid * base ** (k / (mid - 1))}`.
    Since `a` is an integer, each condition is `a >= threshold_k` with an integer threshold.
    Thresholds stop where the bucket reaches `bucket_size` (every caller clamps there).
    """
    mid = bucket_size // 2
    if mid <= 1:
        return []  # v(a) == 0: every |r| > mid lands in bucket `mid`
    base = (max_position - 1) / mid
    thresholds = []
    for k in range(bucket_size - mid):
        boundary = mid * base ** (k / (mid - 1))
        nearest = round(boundary)
        if abs(boundary - nearest) < 1e-9 * max(1.0, boundary):
            thresholds.append(nearest + 1)  # exact integer boundary: strictly greater
        else:
            thresholds.append(math.floor(boundary) + 1)
    return thresholds


def log_bucket_position(relative_positions, bucket_size, max_position):
    """Maps relative positions to DeBERTa-v2 log buckets (HF `make_log_bucket_position`).

    `mid = bucket_size // 2`; `|r| <= mid` keeps `r`; otherwise
    `sign(r) * (ceil(log(|r| / mid) / log((max_position - 1) / mid) * (mid - 1)) + mid)`.
    This ONE function is used in training and in the exported TFLite graph.

    The formula is evaluated exactly: the `ceil(log ...)` steps are precomputed in Python as
    integer distance thresholds and counted at run time with integer comparisons, so TF, XLA
    and TFLite give bit-identical buckets (a float32 `log` that differs by one ulp between
    kernels would otherwise move the bucket at `|r| = max_position - 1`, where the exact
    value is an integer). Magnitudes saturate at `bucket_size`, which the `[0, 2P)` clamp of
    every caller maps exactly as the unsaturated value.

    Args:
        relative_positions: int tensor of any shape (query index minus key index).
        bucket_size: int, the number of position buckets (the seed: max_len).
        max_position: int, the maximum relative position (the seed: max_len).

    Returns:
        int32 tensor of the same shape.
    """
    bucket_size = int(bucket_size)
    max_position = int(max_position)
    relative_positions = ops.cast(relative_positions, "int32")
    mid = bucket_size // 2
    if mid < 1 or max_position - 1 <= mid:
        # No log range (e.g. bucket_size 2): positions pass through and the caller's clamp
        # to [0, 2 * bucket_size) bounds them.
        return relative_positions
    thresholds = _log_bucket_thresholds(bucket_size, max_position)
    magnitude = ops.abs(relative_positions)
    if thresholds:
        passed = ops.expand_dims(magnitude, -1) >= ops.convert_to_tensor(thresholds, "int32")
        steps = ops.sum(ops.cast(passed, "int32"), axis=-1)
    else:
        steps = ops.zeros_like(magnitude)
    log_bucket = mid + steps
    signed = ops.sign(relative_positions) * log_bucket
    return ops.where(magnitude <= mid, relative_positions, signed)


def _distance_rows(length, position_buckets):
    """Table rows of the distances `T-1, T-2, ..., -(T-1)`: `clamp(bucket(d) + P, 0, 2P-1)`."""
    distances = (length - 1) - ops.arange(2 * length - 1, dtype="int32")
    rows = log_bucket_position(distances, position_buckets, position_buckets) + position_buckets
    return ops.clip(rows, 0, 2 * position_buckets - 1)


def tflite_layout_active():
    """True while tracing inside `tflite_layout()`."""
    return _TFLITE_LAYOUT.get()


def _saturated_distance(position_buckets):
    """A distance `D` with `c(d) == c(sign(d) * D)` for every `|d| >= D` (both ends clamped).

    `log_bucket_position` magnitudes stop at `position_buckets` (from the last threshold on,
    or from `P` when there is no log range), and `clamp(bucket + P, 0, 2P - 1)` maps every
    magnitude `>= P` to the same row on each side.
    """
    thresholds = _log_bucket_thresholds(position_buckets, position_buckets)
    return max([position_buckets] + thresholds) + 1


def _distance_table(position_buckets):
    """`(D, rows)`: table rows `c(d)` of the distances `d = -D .. D` (a constant [2D + 1])."""
    limit = _saturated_distance(position_buckets)
    distances = ops.arange(-limit, limit + 1, dtype="int32")
    rows = log_bucket_position(distances, position_buckets, position_buckets) + position_buckets
    return limit, ops.clip(rows, 0, 2 * position_buckets - 1)


def _frame_ids(frames):
    """int32 `[T]` = 0 .. T-1 from a finite `[T]` float tensor, with no RANGE op.

    `cumsum(x * 0 + 1)` has the shape of `x` in a TFLite graph (a RANGE with a run-time
    limit would be a dynamic tensor, see `tflite_layout`).
    """
    return ops.cast(ops.cumsum(frames * 0.0 + 1.0) - 1.0, "int32")


def _skew(scores, length):
    """`[B, H, T, 2T] -> [B, H, T, T]` with `out[..., i, j] = scores[..., i, T-1-i+j]`.

    The last column of `scores` is never read: it makes each row 2T long (the caller scores
    a zero table column there, cheaper than a pad of the `[B, H, T, 2T-1]` scores). In the
    flattened rows, `(T-1) + i * (2T-1) + j` is then the wanted element, i.e. a contiguous
    block reshaped to rows of 2T-1 (works for every T >= 1).
    """
    shape = ops.shape(scores)
    batch, heads = shape[0], shape[1]
    flat = ops.reshape(scores, (batch, heads, 2 * length * length))
    flat = ops.slice(flat, (0, 0, length - 1), (batch, heads, length * (2 * length - 1)))
    rows = ops.reshape(flat, (batch, heads, length, 2 * length - 1))
    return ops.slice(rows, (0, 0, 0, 0), (batch, heads, length, length))


def relative_position_index(length, position_buckets):
    """`c(i, j) = clamp(bucket(i - j) + P, 0, 2P - 1)` for a length-`length` sequence.

    Returns an int32 `[length, length]` tensor of rows of the `[2P, hidden]` relative table.
    Works for any length, also beyond `position_buckets` (the buckets saturate, then clamp).
    Buckets are computed once per distance (`2 * length - 1` values) and then spread.
    """
    rows = _distance_rows(length, position_buckets)  # index m <-> distance T-1-m
    ids = ops.arange(length, dtype="int32")
    return ops.take(rows, (length - 1) - (ops.expand_dims(ids, 1) - ops.expand_dims(ids, 0)))


@keras.saving.register_keras_serializable(package="tfislr")
class DisentangledSelfAttention(keras.layers.Layer):
    """Multi-head disentangled self-attention (DeBERTa-v2, as the 6th-place model ran it).

    For each head, with content projections `Q, K, V` of the hidden states, the relative
    table `R` (`[2P, hidden]`, already layer-normalised by the owner) and the SAME query/key
    projections applied to it (`share_att_key`): `Qr = R Wq + bq`, `Kr = R Wk + bk`,

        score(i, j) = (Q_i . K_j + Q_i . Kr[c(i, j)] + K_j . Qr[c(i, j)]) / sqrt(3 d)

    with `c(i, j) = clamp(log_bucket_position(i - j) + P, 0, 2P - 1)`. The position-to-content
    index is `c(i, j)` (bucket of i - j), which is what HF's code computes (gather with
    `-r + P`, then transpose) and what keras-hub reproduces; docs/recipe.md §7 writes it in the
    paper's notation `c(j, i)`, which differs by the sign of the distance. Then masked
    softmax over keys (float32), dropout on the probabilities, context = probs . V and an
    output projection `hidden -> hidden` (as keras-hub; HF keeps it in `SelfOutput`).

    Masking: with `padding_mask` `[B, T]` (1 = real frame, 0 = padding) the pair mask
    `m_i * m_j` is applied: padded keys get zero probability and padded query rows get an
    all-zero attention row (context 0), as HF's `XSoftmax` does. Without a mask every frame
    attends to every frame.

    Args:
        num_heads: int, number of heads; `hidden_dim` must be divisible by it.
        hidden_dim: int, width of the inputs and outputs.
        position_buckets: int, `P`: number of relative buckets and maximum relative
            position (the seed: max_len); the relative table has `2P` rows.
        dropout: float, dropout on the relative table and on the attention probabilities.

    Call arguments:
        inputs: `[B, T, hidden_dim]`.
        rel_embeddings: `[2P, hidden_dim]`, the layer-normalised relative table.
        padding_mask: optional `[B, T]` float/bool/int, 1 for real frames.
        training: bool.
        return_attention_scores: also return the probabilities `[B, heads, T, T]`.

    Output: `[B, T, hidden_dim]` (and the probabilities when asked).
    """

    def __init__(self, num_heads, hidden_dim, position_buckets, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if hidden_dim % num_heads:
            raise ValueError(
                f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})"
            )
        check_int("position_buckets", position_buckets)
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.position_buckets = position_buckets
        self.dropout = dropout
        self.head_dim = hidden_dim // num_heads
        # The three terms are summed, so their variance is ~3x that of one dot product.
        self.scale = 1.0 / math.sqrt(3.0 * self.head_dim)

        def dense(name):
            return keras.layers.Dense(
                hidden_dim,
                kernel_initializer=torch_linear_kernel_initializer(),
                bias_initializer=torch_linear_bias_initializer(hidden_dim),
                dtype=self.dtype_policy,
                name=name,
            )

        self.query_dense = dense("query")
        self.key_dense = dense("key")
        self.value_dense = dense("value")
        self.output_dense = dense("attention_output")
        self.position_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.probability_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, inputs_shape, rel_embeddings_shape=None, padding_mask_shape=None):
        if inputs_shape[-1] != self.hidden_dim:
            raise ValueError(
                f"DisentangledSelfAttention expects inputs of width {self.hidden_dim}, "
                f"got shape {tuple(inputs_shape)}"
            )
        for layer in (self.query_dense, self.key_dense, self.value_dense, self.output_dense):
            layer.build(inputs_shape)

    def _split_heads(self, x):
        # [B, T, hidden] -> [B, heads, T, head_dim]; a static batch dim keeps the shape
        # constant in the exported graph.
        batch, length = leading_dims(x)
        x = ops.reshape(x, (batch, length, self.num_heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def _relative_scores(self, query, key, rel_embeddings, training):
        """c2p + p2c scores `[B, heads, T, T]` (query already carries the 1/sqrt(3d))."""
        length = ops.shape(query)[2]
        rel_embeddings = self.position_dropout(rel_embeddings, training=training)
        # Projecting the whole table keeps it input-independent, so the TFLite converter
        # folds LayerNorm(table) . W + b into a constant at export.
        pos_key = self.key_dense(rel_embeddings)  # [2P, hidden]
        pos_query = self.query_dense(rel_embeddings) * ops.cast(self.scale, self.compute_dtype)

        rows = _distance_rows(length, self.position_buckets)  # distance T-1-m for column m
        heads = (2 * length - 1, self.num_heads, self.head_dim)

        def per_head(table, table_rows):  # -> [heads, head_dim, 2T], last column zero
            picked = ops.reshape(ops.take(table, table_rows, axis=0), heads)
            # The zero column is the one `_skew` needs to make each score row 2T long.
            return ops.pad(ops.transpose(picked, (1, 2, 0)), ((0, 0), (0, 0), (0, 1)))

        # c2p[i, j] = Q_i . Kr[c(i - j)]: columns ordered by distance T-1 .. -(T-1)
        c2p = _skew(ops.matmul(query, per_head(pos_key, rows)), length)
        # p2c[i, j] = K_j . Qr[c(i - j)]: skewing key rows over the reversed distances gives
        # [j, i]; transpose.
        p2c = _skew(ops.matmul(key, per_head(pos_query, ops.flip(rows, 0))), length)
        return c2p + ops.transpose(p2c, (0, 1, 3, 2))

    def _relative_scores_by_rows(self, query, key, rel_embeddings, frames):
        """The same c2p + p2c scores `[B, heads, T, T]` as `_relative_scores`, for TFLite.

        Each query is scored against all `2P` projected table rows (one matmul with a
        constant right operand), then `c2p[i, j] = S[i, c(i - j)]` and
        `p2c[i, j] = S'[j, c(i - j)]` are picked by one row gather each, heads innermost so
        each gathered row is `heads` floats. Every shape follows from the inputs' shapes
        (see `tflite_layout`): the frame ids come from `frames` (`[T]`, finite) and the
        bucket of `i - j` from a constant table of the distances up to saturation. The dot
        products are the ones `_relative_scores` computes; only which ones are kept differs.
        """
        import tensorflow as tf  # export only: tf.gather, as ops.take adds a negative-index
        # SELECT_V2 per gather (the indices here are never negative)

        buckets, heads, width = self.position_buckets, self.num_heads, self.head_dim
        pos_key = self.key_dense(rel_embeddings)  # [2P, hidden], constant at export
        pos_query = self.query_dense(rel_embeddings) * ops.cast(self.scale, self.compute_dtype)
        limit, table = _distance_table(buckets)
        ids = _frame_ids(frames)
        distance = ops.minimum(ops.maximum(ids[:, None] - ids[None, :], -limit), limit)
        rows = tf.gather(table, distance + limit)
        batch = query.shape[0] or ops.shape(query)[0]

        def pick(states, projected, row_ids):  # -> [B, T, T, heads]
            per_head = ops.transpose(ops.reshape(projected, (2 * buckets, heads, width)), (1, 2, 0))
            scores = ops.matmul(states, per_head)  # [B, heads, T, 2P]
            scores = ops.reshape(ops.transpose(scores, (0, 2, 3, 1)), (batch, -1, heads))
            return tf.gather(scores, row_ids * (2 * buckets) + rows, axis=1)

        both = pick(query, pos_key, ids[:, None]) + pick(key, pos_query, ids[None, :])
        return ops.transpose(both, (0, 3, 1, 2))

    def call(
        self,
        inputs,
        rel_embeddings,
        padding_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        query = self._split_heads(per_frame(self.query_dense, inputs))
        key = self._split_heads(per_frame(self.key_dense, inputs))
        value = self._split_heads(per_frame(self.value_dense, inputs))
        query = query * ops.cast(self.scale, query.dtype)

        scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))
        if tflite_layout_active() and not training:
            # Frame ids from a finite [T] tensor: the mask (ones where real) when given.
            frames = (padding_mask[0] if padding_mask is not None else inputs[0, :, 0])
            relative = self._relative_scores_by_rows(
                query, key, rel_embeddings, ops.cast(frames, query.dtype))
        else:
            relative = self._relative_scores(query, key, rel_embeddings, training)
        scores = scores + relative
        scores = ops.cast(scores, "float32")
        if padding_mask is not None:
            mask = ops.cast(padding_mask, "float32")
            pair_mask = ops.expand_dims(mask, (1, 3)) * ops.expand_dims(mask, (1, 2))
            scores = select_by_mask(pair_mask, scores, _MASKED_LOGIT)
            probabilities = ops.softmax(scores, axis=-1) * pair_mask
        else:
            probabilities = ops.softmax(scores, axis=-1)
        attention = self.probability_dropout(
            ops.cast(probabilities, self.compute_dtype), training=training
        )
        context = ops.matmul(attention, value)  # [B, H, T, d]
        context = ops.transpose(context, (0, 2, 1, 3))
        batch, length = leading_dims(inputs)
        context = ops.reshape(context, (batch, length, self.hidden_dim))
        output = per_frame(self.output_dense, context)
        if return_attention_scores:
            return output, probabilities
        return output

    def compute_output_shape(
        self, inputs_shape, rel_embeddings_shape=None, padding_mask_shape=None
    ):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim,
                "position_buckets": self.position_buckets,
                "dropout": self.dropout,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="tfislr")
class DebertaLayer(keras.layers.Layer):
    """One seed transformer block: a single-layer HF DeBERTa-v2 encoder, modified output.

        r = LayerNorm(rel_embeddings)                        # own [2P, hidden] table
        a = LayerNorm(Dropout(Attention(h, r)) + h)
        u = mish(Dense_hidden(a))                            # intermediate = hidden
        out = LayerNorm(Dropout(Dense_output(u + a)))        # residual BEFORE the dense

    so `output_dim` may differ from `hidden_dim` and there is no residual after the output
    dense (docs/recipe.md §6). All LayerNorms use `layer_norm_epsilon` (1e-7, deberta-v3-base).
    Linear kernels/biases use torch's defaults and the relative table N(0, 1), as the bare
    encoder module of the original was never passed through HF's `_init_weights`.

    Args:
        hidden_dim, output_dim, num_heads: widths.
        position_buckets: `P` (the seed: max_len).
        dropout: attention-probability, relative-table and hidden dropout rate.
        layer_norm_epsilon: float.

    Call: `(hidden [B, T, hidden_dim], padding_mask=None [B, T], training=None,
    return_attention_scores=False) -> [B, T, output_dim]` (plus `[B, heads, T, T]`).
    Padded frames never influence real frames (attention pair mask; everything else is
    per frame); the outputs AT padded frames are not meaningful.
    """

    def __init__(
        self,
        hidden_dim,
        output_dim,
        num_heads,
        position_buckets,
        dropout=0.0,
        layer_norm_epsilon=1e-7,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.num_heads = num_heads
        self.position_buckets = position_buckets
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon

        def norm(name):
            return LayerNormalization(
                epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name=name
            )

        self.rel_embeddings_norm = norm("rel_embeddings_norm")
        self.attention = DisentangledSelfAttention(
            num_heads,
            hidden_dim,
            position_buckets,
            dropout=dropout,
            dtype=self.dtype_policy,
            name="attention",
        )
        self.attention_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.attention_norm = norm("attention_norm")
        self.intermediate_dense = keras.layers.Dense(
            hidden_dim,
            activation=mish,
            kernel_initializer=torch_linear_kernel_initializer(),
            bias_initializer=torch_linear_bias_initializer(hidden_dim),
            dtype=self.dtype_policy,
            name="intermediate",
        )
        self.output_dense = keras.layers.Dense(
            output_dim,
            kernel_initializer=torch_linear_kernel_initializer(),
            bias_initializer=torch_linear_bias_initializer(hidden_dim),
            dtype=self.dtype_policy,
            name="output",
        )
        self.output_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.output_norm = norm("output_norm")

    def build(self, hidden_shape, padding_mask_shape=None):
        if hidden_shape[-1] != self.hidden_dim:
            raise ValueError(
                f"DebertaLayer expects inputs of width {self.hidden_dim}, got shape "
                f"{tuple(hidden_shape)}"
            )
        table_shape = (2 * self.position_buckets, self.hidden_dim)
        self.rel_embeddings = self.add_weight(
            shape=table_shape,
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="rel_embeddings",
        )
        self.rel_embeddings_norm.build(table_shape)
        self.attention.build(hidden_shape, table_shape)
        self.attention_norm.build(hidden_shape)
        self.intermediate_dense.build(hidden_shape)
        self.output_dense.build(hidden_shape)
        self.output_norm.build(tuple(hidden_shape[:-1]) + (self.output_dim,))

    def normalized_rel_embeddings(self):
        return self.rel_embeddings_norm(self.rel_embeddings)

    def call(self, hidden, padding_mask=None, training=None, return_attention_scores=False):
        attended, scores = self.attention(
            hidden,
            self.normalized_rel_embeddings(),
            padding_mask=padding_mask,
            training=training,
            return_attention_scores=True,
        )
        attended = self.attention_norm(
            self.attention_dropout(attended, training=training) + hidden
        )
        intermediate = per_frame(self.intermediate_dense, attended)
        output = per_frame(self.output_dense, intermediate + attended)
        output = self.output_norm(self.output_dropout(output, training=training))
        if return_attention_scores:
            return output, scores
        return output

    def compute_output_shape(self, hidden_shape, padding_mask_shape=None):
        return tuple(hidden_shape[:-1]) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "output_dim": self.output_dim,
                "num_heads": self.num_heads,
                "position_buckets": self.position_buckets,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config


def transformer_widths(transfo_dim, num_layers, drop_rate):
    """Width/dropout rule (docs/recipe.md §6) -> `(hidden_dims, output_dims, dropouts)`.

    For 3 layers and `transfo_dim >= 512`: `d_in = 512, delta = min(256, transfo_dim - 512)`
    when `transfo_dim <= 1024`, else `d_in = 1024, delta = (transfo_dim - 1024) // 2`; layer
    k (0-based) has hidden width `min(d_in + k * delta, transfo_dim)`; the last layer outputs
    `transfo_dim` when `transfo_dim >= 1024`, else returns to `d_in`. Dropout is `drop_rate`,
    doubled from layer 2 when `delta > 0`, doubled again at layer 3 when `transfo_dim >= 1024`.
    This reproduces all four tabulated models exactly.

    Any other case (fewer/more layers, `transfo_dim < 512`, used for small test models) is
    our extension: every layer is `transfo_dim -> transfo_dim` with dropout `drop_rate`.
    """
    check_int("transfo_layers", num_layers)
    if num_layers != 3 or transfo_dim < 512:
        return [transfo_dim] * num_layers, [transfo_dim] * num_layers, [drop_rate] * num_layers
    if transfo_dim <= 1024:
        d_in, delta = 512, min(256, transfo_dim - 512)
    else:
        d_in, delta = 1024, (transfo_dim - 1024) // 2
    hidden = [min(d_in + k * delta, transfo_dim) for k in range(3)]
    last = transfo_dim if transfo_dim >= 1024 else d_in
    outputs = hidden[1:] + [last]
    second = drop_rate * 2 if delta > 0 else drop_rate
    third = second * 2 if transfo_dim >= 1024 else second
    return hidden, outputs, [drop_rate, second, third]


@keras.saving.register_keras_serializable(package="tfislr")
class DebertaEncoder(keras.layers.Layer):
    """A stack of `DebertaLayer`s (the seed: 3 single-layer encoders, each its own table).

    Args:
        hidden_dims, output_dims, dropout_rates: per-layer lists of equal length, with
            `output_dims[k] == hidden_dims[k + 1]` (see `transformer_widths`).
        num_heads, position_buckets, layer_norm_epsilon: as in `DebertaLayer`.

    Call: `(hidden [B, T, hidden_dims[0]], padding_mask=None [B, T], mixup=None,
    training=None, return_attention_scores=False) -> [B, T, output_dims[-1]]`
    (with `return_attention_scores`: `(output, [probabilities per layer])`).

    Manifold mixup: `mixup = {"lambda": f32[B], "permutation": int32[B], "layer": int32
    scalar or [B]}` mixes `h = lambda * h + (1 - lambda) * h[permutation]` right before layer
    `mixup["layer"]` (0-based, per clip when a vector) and from there on uses the union of
    the two padding masks.
    `layer` is a tensor, so one traced graph serves every draw.
    """

    def __init__(
        self,
        hidden_dims,
        output_dims,
        dropout_rates,
        num_heads,
        position_buckets,
        layer_norm_epsilon=1e-7,
        **kwargs,
    ):
        super().__init__(**kwargs)
        hidden_dims, output_dims, dropout_rates = (
            [int(v) for v in hidden_dims],
            [int(v) for v in output_dims],
            [float(v) for v in dropout_rates],
        )
        if not (len(hidden_dims) == len(output_dims) == len(dropout_rates) >= 1):
            raise ValueError(
                "hidden_dims, output_dims and dropout_rates must be non-empty lists of the "
                f"same length, got {hidden_dims}, {output_dims}, {dropout_rates}"
            )
        for k in range(len(hidden_dims) - 1):
            if output_dims[k] != hidden_dims[k + 1]:
                raise ValueError(
                    f"layer {k} outputs {output_dims[k]} but layer {k + 1} expects "
                    f"{hidden_dims[k + 1]}"
                )
        self.hidden_dims = hidden_dims
        self.output_dims = output_dims
        self.dropout_rates = dropout_rates
        self.num_heads = num_heads
        self.position_buckets = position_buckets
        self.layer_norm_epsilon = layer_norm_epsilon
        self.encoder_layers = [
            DebertaLayer(
                hidden,
                output,
                num_heads,
                position_buckets,
                dropout=rate,
                layer_norm_epsilon=layer_norm_epsilon,
                dtype=self.dtype_policy,
                name=f"deberta_layer_{k}",
            )
            for k, (hidden, output, rate) in enumerate(zip(hidden_dims, output_dims, dropout_rates))
        ]

    def build(self, hidden_shape, padding_mask_shape=None):
        shape = tuple(hidden_shape)
        for layer in self.encoder_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(
        self,
        hidden,
        padding_mask=None,
        mixup=None,
        training=None,
        return_attention_scores=False,
    ):
        if mixup is not None:
            if padding_mask is None:
                padding_mask = ops.ones(ops.shape(hidden)[:2], dtype=self.compute_dtype)
            weight = ops.cast(ops.reshape(mixup["lambda"], (-1, 1, 1)), self.compute_dtype)
            permutation = ops.cast(mixup["permutation"], "int32")
            mix_layer = ops.cast(mixup["layer"], "int32")
        all_scores = []
        for k, layer in enumerate(self.encoder_layers):
            if mixup is not None:
                # `layer` is a scalar or one index per clip ([B]): broadcast over (T, D).
                mix_here = ops.reshape(ops.equal(mix_layer, k), (-1, 1, 1))
                mixed = weight * hidden + (1.0 - weight) * ops.take(hidden, permutation, axis=0)
                hidden = ops.where(mix_here, mixed, hidden)
                union = ops.maximum(padding_mask, ops.take(padding_mask, permutation, axis=0))
                padding_mask = ops.where(mix_here[:, :, 0], union, padding_mask)
            hidden, scores = layer(
                hidden, padding_mask=padding_mask, training=training, return_attention_scores=True
            )
            all_scores.append(scores)
        if return_attention_scores:
            return hidden, all_scores
        return hidden

    def compute_output_shape(self, hidden_shape, padding_mask_shape=None):
        return tuple(hidden_shape[:-1]) + (self.output_dims[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dims": list(self.hidden_dims),
                "output_dims": list(self.output_dims),
                "dropout_rates": list(self.dropout_rates),
                "num_heads": self.num_heads,
                "position_buckets": self.position_buckets,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
