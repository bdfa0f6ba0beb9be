"""model.embedding: LandmarkEmbedding through the layer harness, padding ids, point count."""

import numpy as np
import pytest
from tfislr import landmarks as lm
from tfislr.model import LandmarkEmbedding

from test_case import B, T, TestCase, padding_mask, random


class TestLandmarkEmbedding(TestCase):
    @pytest.mark.parametrize("conv_window", [None, T - 1])
    def test_landmark_embedding(self, tmp_path, conv_window):
        batch = {"landmarks": random(B, T, 100, 3), "padding_mask": padding_mask()}
        self.run_layer_test(
            LandmarkEmbedding,
            {"embed_dim": 16, "conv_window": conv_window},
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


def _original_position_conv(layer, clip, window):
    """The position convolutions as the original trained them: both "same" (zero padding of
    kernel // 2 on each side) over the clip zero-padded to exactly `window` frames."""
    padded = np.pad(clip, [(0, 0), (0, window - clip.shape[1]), (0, 0), (0, 0)])
    first = np.asarray(layer.conv_1(padded))  # conv_1 is "same"
    return np.asarray(layer.conv_2(np.pad(first, [(0, 0), (2, 2), (0, 0), (0, 0)])))


@pytest.mark.parametrize("frames", [3, 4, 5, 6])
def test_conv_window_is_the_original_sequence_end_whatever_the_padding(frames):
    """conv_window=M: a clip's position features are those of the original's batch padded to
    exactly M frames, padded here to M or more; None: those of a clip followed by zeros. The
    two differ only for clips of at least M - 1 frames (kernel 5)."""
    window = 6
    bounded = LandmarkEmbedding(embed_dim=16, conv_window=window)
    clip = random(1, frames, 100, 3)
    bounded(clip)  # builds
    unbounded = LandmarkEmbedding(embed_dim=16)
    unbounded(clip)
    unbounded.set_weights(bounded.get_weights())
    expected = _original_position_conv(bounded, clip, window)[:, :frames]
    outputs = {}
    for name, layer in (("bounded", bounded), ("unbounded", unbounded)):
        for total in (window, window + 3):
            x = np.pad(clip, [(0, 0), (0, total - frames), (0, 0), (0, 0)])
            mask = (np.arange(total) < frames).astype("float32")[None]
            outputs[name, total] = np.asarray(layer(x, padding_mask=mask))[:, :frames]
        # No mask: the T frames are all real (as in the exported graph).
        outputs[name, None] = np.asarray(layer(clip))
    for total in (window + 3, None):  # not a function of the padding
        np.testing.assert_allclose(outputs["bounded", total], outputs["bounded", window], atol=1e-6)
        np.testing.assert_allclose(outputs["unbounded", total], outputs["unbounded", window],
                                   atol=1e-6)
    # The bounded layer's features come from the original's convolutions.
    position = np.concatenate([clip, expected], -1)
    kernel = np.asarray(bounded.feature_dense.kernel)
    type_ids = bounded.type_norm(bounded.type_embedding(np.asarray(lm.TYPE_IDS)))
    landmark_ids = bounded.landmark_norm(bounded.landmark_embedding(np.asarray(lm.LANDMARK_IDS)))
    ids = np.concatenate([np.asarray(type_ids), np.asarray(landmark_ids)], -1)
    reference = (np.asarray(bounded.position_dense(position)) @ kernel[32:]
                 + ids @ kernel[:32] + np.asarray(bounded.feature_dense.bias))
    np.testing.assert_allclose(outputs["bounded", window], reference, atol=1e-5)
    differs = np.abs(outputs["bounded", window] - outputs["unbounded", window]).max() > 1e-4
    assert differs == (frames >= window - 1)


def test_conv_window_checks_its_value_and_round_trips():
    layer = LandmarkEmbedding(conv_window=80)
    assert LandmarkEmbedding.from_config(layer.get_config()).conv_window == 80
    assert LandmarkEmbedding.from_config(LandmarkEmbedding().get_config()).conv_window is None
    for bad in (0, -1, 2.5, True, "80"):
        with pytest.raises(ValueError, match="conv_window"):
            LandmarkEmbedding(conv_window=bad)
