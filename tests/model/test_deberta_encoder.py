"""model.deberta_encoder: a stack of three DeBERTa layers of different widths through the layer
harness; mismatched widths are refused."""

import pytest
from tfislr.model import DebertaEncoder, DisentangledSelfAttention

from test_case import B, T, TestCase, padding_mask, random


class TestDebertaEncoder(TestCase):
    def test_deberta_encoder(self, tmp_path):
        batch = {"hidden": random(B, T, 32), "padding_mask": padding_mask()}
        self.run_layer_test(
            DebertaEncoder,
            {
                "hidden_dims": [32, 48, 48],
                "output_dims": [48, 48, 24],
                "dropout_rates": [0.05, 0.1, 0.2],
                "num_heads": 4,
                "position_buckets": 6,
            },
            batch,
            lambda layer, b, **kw: layer(b["hidden"], padding_mask=b["padding_mask"], **kw),
            expected_output_shape=(B, T, 24),
            padded_keys=["hidden"],
            deterministic_kwargs={"dropout_rates": [0.0, 0.0, 0.0]},
            long_length=15,
            expected_num_trainable_weights=57,
            tmp_path=tmp_path,
        )


def test_deberta_encoder_rejects_mismatched_widths():
    with pytest.raises(ValueError, match="layer 0 outputs"):
        DebertaEncoder([32, 48], [40, 24], [0.0, 0.0], num_heads=4, position_buckets=4)
    with pytest.raises(ValueError, match="divisible"):
        DisentangledSelfAttention(num_heads=5, hidden_dim=32, position_buckets=4)
