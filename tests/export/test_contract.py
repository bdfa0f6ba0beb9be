"""The exported file keeps Kaggle's contract: signature names, shapes, and run-time shapes only
in preprocessing."""

import numpy as np

from tfislr.export import checks, graph

from tiny_exports import NUM_CLASSES, runner_for


def test_contract_signature_names_and_shapes(exported):
    _, path, _ = exported
    interpreter, runner = runner_for(path)
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["inputs"], "outputs": ["outputs"]}
    }
    (detail,) = interpreter.get_signature_runner("serving_default").get_input_details().values()
    assert list(detail["shape_signature"]) == [-1, 543, 3]
    assert detail["dtype"] == np.float32
    for length in (1, 20, 300):  # one runner, variable length, no resize
        clip = checks.probe_sequences(lengths=[length], seed=length)[0]
        probs = runner(inputs=clip)["outputs"]
        assert probs.shape == (NUM_CLASSES,) and probs.dtype == np.float32
        assert np.all(probs >= 0) and abs(probs.sum() - 1) < 1e-5


def test_only_preprocessing_has_run_time_shapes(exported):
    """Which frames a clip keeps is data-dependent (Preprocess: WHERE, RANGE, a slice);
    every model op's output shape must follow from its inputs' shapes (`tflite_layout`):
    no per-call dynamic tensors or memory re-planning inside the models."""
    ensemble, path, _ = exported
    dynamic = graph.dynamic_shape_ops(path.read_bytes())
    assert [d for d in dynamic if "classifier" in d[1]] == []
    assert 1 <= len(dynamic) <= 3 * len(ensemble), dynamic
