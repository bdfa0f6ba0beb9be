"""export.graph: the ensemble module averages member softmaxes, conversion keeps to builtin ops
(and names the op that is not), quantized weights stay within tolerance."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from tfislr.export import ExportError, checks, export_ensemble, graph

from tiny_exports import members, runner_for, weight_types


def test_output_is_mean_of_member_softmax(exported):
    """Checks the composition against each member run directly in Keras."""
    ensemble, path, _ = exported
    _, runner = runner_for(path)
    for clip in checks.probe_sequences(lengths=[5, 30, 120], seed=11):
        expected = []
        for member in ensemble:
            points = member.preprocess(tf.constant(clip))[tf.newaxis]
            logits = member.model({"landmarks": points,
                                   "padding_mask": tf.ones(tf.shape(points)[:2])},
                                  training=False)
            expected.append(keras.ops.convert_to_numpy(keras.ops.softmax(logits[0])))
        got = runner(inputs=clip)["outputs"]
        np.testing.assert_allclose(got, np.mean(expected, axis=0), atol=1e-5)
        # The members disagree, so the average is not just one of them.
        assert np.abs(expected[0] - expected[1]).max() > 1e-3


class _DeterminantModule(tf.Module):
    """A graph that needs a Select TF op (MatrixDeterminant has no builtin kernel)."""

    @tf.function(input_signature=[tf.TensorSpec([None, 543, 3], tf.float32, name="inputs")])
    def serving_default(self, inputs):
        square = tf.reshape(inputs[:, :9, 0], [-1, 3, 3])
        return {"outputs": tf.nn.softmax(tf.reshape(tf.linalg.det(square), [-1]))}


def test_select_tf_op_guard_rejects_flex_model():
    module = _DeterminantModule()
    content = graph.convert(module, "fp32", allow_select_tf_ops=True)  # converts, with Flex
    assert "CUSTOM:FlexMatrixDeterminant" in graph.model_ops(content)
    with pytest.raises(ExportError, match="Select TF.*MatrixDeterminant"):
        graph.check_builtin_ops(content)


def test_builtins_only_conversion_names_the_op():
    with pytest.raises(ExportError, match="MatrixDeterminant"):
        graph.convert(_DeterminantModule(), "fp32")




@pytest.mark.parametrize(
    # Each is a conversion of its own: fp16 runs in CI (`large`); int8 runs in CI through
    # test_int8_agreement_with_fp32_is_measured (with data), and this case (no data: agreement
    # on the parity clips, no accuracy) is extra_large only.
    "quantization", [pytest.param("fp16", marks=pytest.mark.large),
                     pytest.param("int8", marks=pytest.mark.extra_large)]
)
def test_quantized_exports_within_documented_tolerance(tmp_path, quantization):
    path = tmp_path / f"{quantization}.tflite"
    report = export_ensemble(members()[:1], path, quantization, verbose=False,
                             latency_repeats=1)
    assert report["parity"]["max_abs_diff"] <= checks.PARITY_TOLERANCE[quantization]
    assert report["parity"]["max_abs_diff"] > 0  # the weights really were rounded
    types = weight_types(path.read_bytes())
    expected = {"fp16": "FLOAT16", "int8": "INT8"}[quantization]
    assert types.get(expected, 0) > types.get("FLOAT32", 0), types
    if quantization == "int8":  # no data given: agreement on the parity clips, no accuracy
        assert report["agreement"]["num_sequences"] == report["parity"]["num_sequences"]
        assert report["agreement"]["accuracy"] is None
    else:
        assert "agreement" not in report
