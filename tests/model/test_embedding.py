"""model.embedding: LandmarkEmbedding through the layer harness, padding ids, point count."""

import numpy as np
import pytest
from tfislr.model import LandmarkEmbedding

from test_case import B, T, TestCase, padding_mask, random


class TestLandmarkEmbedding(TestCase):
    def test_landmark_embedding(self, tmp_path):
        batch = {"landmarks": random(B, T, 100, 3), "padding_mask": padding_mask()}
        self.run_layer_test(
            LandmarkEmbedding,
            {"embed_dim": 16},
            batch,
            lambda layer, b, **kw: layer(b["landmarks"], padding_mask=b["padding_mask"]),
            expected_output_shape=(B, T, 100, 16),
            padded_keys=["landmarks"],
            expected_num_trainable_weights=12,
            tmp_path=tmp_path,
        )


def test_landmark_embedding_padded_frames_get_padding_ids():
    """At padded frames the ids act as the original's padding id 0 (LayerNorm(0) = beta)."""
    layer = LandmarkEmbedding(embed_dim=16)
    x = random(1, 3, 100, 3)
    out = np.asarray(layer(x, padding_mask=np.array([[1, 1, 0]], "float32")))
    real = np.asarray(layer(x, padding_mask=np.ones((1, 3), "float32")))
    # The padded frame differs from the same frame treated as real (ids and zeroed xyz) ...
    assert not np.allclose(out[0, 2], real[0, 2])
    # ... and equals the projection of [beta_type, beta_landmark, position] for every point.
    kernel = np.asarray(layer.feature_dense.kernel)
    beta = np.concatenate([np.asarray(layer.type_norm.beta), np.asarray(layer.landmark_norm.beta)])
    id_part = beta @ kernel[:32] + np.asarray(layer.feature_dense.bias)
    zeroed = x.copy()
    zeroed[:, 2] = 0
    extended = np.pad(zeroed, [(0, 0), (0, 2), (0, 0), (0, 0)])  # zero-extended time
    # conv_2 is "valid" on conv_1's outputs with the 2 front zeros of a "same" convolution
    front = np.pad(layer.conv_1(extended), [(0, 0), (2, 0), (0, 0), (0, 0)])
    conv = np.asarray(layer.conv_2(front))
    position = np.asarray(layer.position_dense(np.concatenate([zeroed, conv], -1)))
    np.testing.assert_allclose(out[0, 2], position[0, 2] @ kernel[32:] + id_part, atol=1e-5)


def test_landmark_embedding_rejects_wrong_point_count():
    with pytest.raises(ValueError, match="100, 3"):
        LandmarkEmbedding()(np.zeros((1, 2, 99, 3), "float32"))
