"""model.deberta_layer: DebertaLayer through the layer harness."""

from tfislr.model import DebertaLayer

from test_case import B, T, TestCase, padding_mask, random


class TestDebertaLayer(TestCase):
    def test_deberta_layer(self, tmp_path):
        batch = {"hidden": random(B, T, 32), "padding_mask": padding_mask()}
        self.run_layer_test(
            DebertaLayer,
            {"hidden_dim": 32, "output_dim": 24, "num_heads": 4, "position_buckets": 6, "dropout": 0.1},
            batch,
            lambda layer, b, **kw: layer(b["hidden"], padding_mask=b["padding_mask"], **kw),
            expected_output_shape=(B, T, 24),
            padded_keys=["hidden"],
            deterministic_kwargs={"dropout": 0.0},
            long_length=19,
            expected_num_trainable_weights=19,
            tmp_path=tmp_path,
        )
