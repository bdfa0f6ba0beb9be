"""model.deberta_encoder: a stack of three DeBERTa layers of different widths through the layer
harness (`large`) and one quick call; mismatched widths are refused."""

import numpy as np
import pytest
from tfislr.model import DebertaEncoder, DisentangledSelfAttention

from test_case import B, T, TestCase, padding_mask, random

ENCODER = {
    "hidden_dims": [32, 48, 48],
    "output_dims": [48, 48, 24],
    "dropout_rates": [0.05, 0.1, 0.2],
    "num_heads": 4,
    "position_buckets": 6,
}


def _apply(layer, b, **kw):
    return layer(b["hidden"], padding_mask=b["padding_mask"], **kw)


class TestDebertaEncoder(TestCase):
    @pytest.mark.large  # the harness on three layers
    def test_deberta_encoder(self, tmp_path):
        batch = {"hidden": random(B, T, 32), "padding_mask": padding_mask()}
        self.run_layer_test(
            DebertaEncoder,
            ENCODER,
            batch,
            _apply,
            expected_output_shape=(B, T, 24),
            padded_keys=["hidden"],
            deterministic_kwargs={"dropout_rates": [0.0, 0.0, 0.0]},
            long_length=15,
            expected_num_trainable_weights=57,
            tmp_path=tmp_path,
        )


def test_deberta_encoder_call_ignores_padded_frames():
    """Quick (the harness is `large`): one eager inference call of the three-layer stack gives
    finite [B, T, 24] outputs, and other values at padded frames change no real frame."""
    encoder = DebertaEncoder(**ENCODER)
    batch = {"hidden": random(B, T, 32), "padding_mask": padding_mask()}
    out = np.asarray(_apply(encoder, batch))
    assert out.shape == (B, T, 24) and np.isfinite(out).all()
    assert len(encoder.trainable_weights) == 57
    real = batch["padding_mask"] > 0
    noisy = dict(batch, hidden=np.where(real[..., None], batch["hidden"], random(B, T, 32, seed=1)))
    np.testing.assert_allclose(np.asarray(_apply(encoder, noisy))[real], out[real], atol=1e-5)


def test_deberta_encoder_rejects_mismatched_widths():
    with pytest.raises(ValueError, match="layer 0 outputs"):
        DebertaEncoder([32, 48], [40, 24], [0.0, 0.0], num_heads=4, position_buckets=4)
    with pytest.raises(ValueError, match="divisible"):
        DisentangledSelfAttention(num_heads=5, hidden_dim=32, position_buckets=4)
