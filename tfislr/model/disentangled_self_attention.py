"""DeBERTa-v2 style disentangled self-attention (one head set, content + relative terms).

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
benchmarks/README.md). The TFLite export traces the same layers inside `tflite_layout()`, which picks
the same dot products with a row gather whose shapes all follow from the input's: in a
TFLite graph the skew's computed reshapes and slices are per-call dynamic tensors.
"""

import math

import keras
from keras import ops

from tfislr.checks import check_int
from tfislr.model.initializers import (
    torch_linear_bias_initializer,
    torch_linear_kernel_initializer,
)
from tfislr.model.modes import select_by_mask, tflite_layout_active
from tfislr.model.per_frame import leading_dims, per_frame
from tfislr.model.relative_positions import distance_rows, distance_table, frame_ids, skew

# Large negative logit for masked pairs. Softmax always runs in float32 here (also under
# mixed precision), so a finite float32 value is safe: a fully masked (padded) query row
# becomes uniform, then is zeroed.
_MASKED_LOGIT = -1e9


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

        rows = distance_rows(length, self.position_buckets)  # distance T-1-m for column m
        heads = (2 * length - 1, self.num_heads, self.head_dim)

        def per_head(table, table_rows):  # -> [heads, head_dim, 2T], last column zero
            picked = ops.reshape(ops.take(table, table_rows, axis=0), heads)
            # The zero column is the one `skew` needs to make each score row 2T long.
            return ops.pad(ops.transpose(picked, (1, 2, 0)), ((0, 0), (0, 0), (0, 1)))

        # c2p[i, j] = Q_i . Kr[c(i - j)]: columns ordered by distance T-1 .. -(T-1)
        c2p = skew(ops.matmul(query, per_head(pos_key, rows)), length)
        # p2c[i, j] = K_j . Qr[c(i - j)]: skewing key rows over the reversed distances gives
        # [j, i]; transpose.
        p2c = skew(ops.matmul(key, per_head(pos_query, ops.flip(rows, 0))), length)
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
        limit, table = distance_table(buckets)
        ids = frame_ids(frames)
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

