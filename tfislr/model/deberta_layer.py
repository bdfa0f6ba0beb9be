"""The seed's transformer block: one HF DeBERTa-v2 encoder layer with a modified output."""

import keras

from tfislr.model.activations import mish
from tfislr.model.disentangled_self_attention import DisentangledSelfAttention
from tfislr.model.initializers import (
    torch_linear_bias_initializer,
    torch_linear_kernel_initializer,
)
from tfislr.model.per_frame import per_frame


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
            return keras.layers.LayerNormalization(
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

