"""The exported TFLite file: contract, edge inputs, op guard, parity, size, run-dir loading.

Small models keep each conversion at a few seconds; the full-size (len25 + len80)
export is the `slow` test at the end.
"""

import hashlib
import json
import os
import pathlib

import numpy as np
import pytest

import keras
import tensorflow as tf

from tfislr.cli import evaluate as evaluate_cli
from tfislr import landmarks as lm
from tfislr.errors import ConfigError, DataError
from tfislr.export import ExportError, checks, export_ensemble, graph, pair
from tfislr.export import ensemble as ensemble_lib
from tfislr.export.ensemble import load_ensemble_config
from tfislr.export.members import EnsembleMember, check_members_agree, latest_run
from tfislr.runs.run_dir import RunDir

NUM_CLASSES = 7
SIGNS = [f"sign_{i}" for i in range(NUM_CLASSES)]
# One DeBERTa layer: a conversion takes ~5 s instead of ~11 s with three. The three-layer
# stack is converted in test_full_size_ensemble_fits_kaggle_limit (the real models, with
# every check of the export) and test_model_export.
TINY = dict(embed_dim=4, dense_dim=16, transfo_dim=32, distill_dense_dim=16,
            distill_transfo_dim=32, transfo_layers=1, num_heads=4, drop_rate=0.0)


def small_model(num_classes=NUM_CLASSES, max_len=10, seed=0):
    """A distilled classifier with tiny widths (the real architecture)."""
    from tfislr.config import ModelConfig

    from tfislr.model import build_classifier

    keras.utils.set_random_seed(seed)
    model = build_classifier(ModelConfig(**TINY), num_classes, max_len, distilled=True)
    model({"landmarks": np.zeros((1, max_len, lm.NUM_POINTS, 3), np.float32),
           "padding_mask": np.ones((1, max_len), np.float32)})
    # Random init gives near-uniform probabilities; larger weights make the parity
    # and averaging checks see confident, distinct predictions.
    for variable in model.trainable_variables:
        if len(variable.shape) >= 2:
            variable.assign(variable * 3.0)
    return model


def members(seed=0, num_classes=NUM_CLASSES, signs=SIGNS):
    return [
        EnsembleMember("short", small_model(num_classes, 8, seed), 8, signs),
        EnsembleMember("long", small_model(num_classes, 20, seed + 1), 20, signs),
    ]


def runner_for(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    return interpreter, interpreter.get_signature_runner("serving_default")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A two-member fp32 ensemble written through the public API, with its report."""
    ensemble = members()
    path = tmp_path_factory.mktemp("export") / "ensemble.tflite"
    report = export_ensemble(ensemble, path, "fp32", verbose=False, latency_repeats=1)
    return ensemble, path, report


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


def test_report_written_next_to_file(exported):
    _, path, report = exported
    saved = json.loads(path.with_suffix(".json").read_text())
    assert saved["size"]["bytes"] == path.stat().st_size
    assert saved["signs"] == SIGNS and saved["num_classes"] == NUM_CLASSES
    assert [m["max_len"] for m in saved["members"]] == [8, 20]
    assert saved["parity"]["max_abs_diff"] <= checks.PARITY_TOLERANCE["fp32"]
    assert saved["latency"]["num_threads"] == 1 and saved["latency"]["median_ms"] > 0
    assert not any(op.startswith("CUSTOM") for op in saved["ops"])
    assert report["report_path"] == str(path.with_suffix(".json"))
    assert saved["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


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


@pytest.mark.parametrize("case", list(checks.edge_case_inputs()))
def test_edge_inputs_on_exported_file(exported, case):
    _, path, _ = exported
    _, runner = runner_for(path)
    clip = checks.edge_case_inputs()[case]
    probs = runner(inputs=clip)["outputs"]
    assert probs.shape == (NUM_CLASSES,)
    assert np.all(np.isfinite(probs)), f"{case}: {probs}"
    assert abs(float(probs.sum()) - 1.0) < 1e-5


def test_nothing_left_inputs_agree(exported):
    """0 frames, all-NaN and no-hands all mean "no hand seen": one defined answer."""
    _, path, _ = exported
    _, runner = runner_for(path)
    cases = checks.edge_case_inputs()
    outputs = [runner(inputs=cases[c])["outputs"] for c in ("0_frames", "all_nan", "no_hands",
                                                            "all_inf")]
    for out in outputs[1:]:
        np.testing.assert_allclose(out, outputs[0], atol=1e-6)


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


def test_parity_failure_is_reported(exported, tmp_path):
    """A module with other weights than the file must fail the parity check."""
    _, path, _ = exported
    other = graph.build_ensemble_module(members(seed=5))
    with pytest.raises(ExportError, match=r"parity failed .* max abs probability diff"):
        checks.check_parity(other, path, checks.probe_sequences(4), tolerance=1e-3)


def test_failed_export_keeps_earlier_file_and_report(tmp_path, exported, monkeypatch):
    """A failed check leaves the earlier good export (file and report) as it was; the
    failure's file and report go to `.rejected.*` and the error names those, not a temp."""
    ensemble, fp32_path, _ = exported
    path = tmp_path / "keep.tflite"
    path.write_bytes(fp32_path.read_bytes())  # an earlier export that passed
    good_report = fp32_path.with_suffix(".json").read_text()
    path.with_suffix(".json").write_text(good_report)
    # Reuse the fixture's flatbuffer: this test is about the check, not the converter.
    monkeypatch.setattr(graph, "convert", lambda *args, **kwargs: fp32_path.read_bytes())
    with pytest.raises(ExportError) as raised:
        export_ensemble(ensemble, path, "fp32", max_size_mb=0.001, verbose=False)
    message = str(raised.value)
    rejected, rejected_report = tmp_path / "keep.rejected.tflite", tmp_path / "keep.rejected.json"
    assert "unchecked" not in message
    assert message.startswith(f"{path} not written: {rejected} is ")
    assert "above the 0.001 MB limit" in message and str(rejected_report) in message
    assert path.read_bytes() == fp32_path.read_bytes()
    assert path.with_suffix(".json").read_text() == good_report
    assert rejected.read_bytes() == fp32_path.read_bytes()  # kept for inspection
    report = json.loads(rejected_report.read_text())
    assert "above the" in report["error"] and report["path"] == str(rejected)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["keep.tflite", "keep.json", rejected.name, rejected_report.name])


def test_failed_export_without_earlier_one_writes_no_output(tmp_path, exported, monkeypatch):
    ensemble, fp32_path, _ = exported
    monkeypatch.setattr(graph, "convert", lambda *args, **kwargs: fp32_path.read_bytes())
    path = tmp_path / "big.tflite"
    with pytest.raises(ExportError, match=r"MB \([\d,]+ bytes\), above the 0.001 MB limit"):
        export_ensemble(ensemble, path, "fp32", max_size_mb=0.001, verbose=False)
    assert not path.exists() and not path.with_suffix(".json").exists()
    assert (tmp_path / "big.rejected.json").exists()


def _export_killed_before_renaming_onto(target, *args, **kwargs):
    """`export_ensemble(*args, **kwargs)`, stopped (as a kill would) when `os.replace` is
    about to put `target` in place."""
    replace = os.replace

    def replace_but_not_onto_target(source, destination):
        if pathlib.Path(destination) == target:
            raise KeyboardInterrupt(f"killed before {target} was renamed into place")
        return replace(source, destination)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", replace_but_not_onto_target)
        with pytest.raises(KeyboardInterrupt):
            export_ensemble(*args, **kwargs)


def test_a_crash_between_the_two_renames_is_detected_by_every_reader(
        tmp_path, exported, monkeypatch, synthetic_data_dir, capsys):
    """The new report is in place, the file rename never happened: the old file and the
    new report are not a pair, and the readers of the report (evaluate, predict) say so."""
    from tfislr import evaluate, predict

    ensemble, fp32_path, _ = exported
    # This test is about the renames: the file is the fixture's, its checks are skipped.
    monkeypatch.setattr(graph, "convert", lambda *args, **kwargs: fp32_path.read_bytes())
    monkeypatch.setattr(ensemble_lib, "_check_file", lambda *args, **kwargs: None)
    path = tmp_path / "model.tflite"
    path.write_bytes(b"an earlier export")
    path.with_suffix(".json").write_text(json.dumps(
        {"signs": ["old"], "sha256": hashlib.sha256(b"an earlier export").hexdigest()}))
    _export_killed_before_renaming_onto(path, ensemble, path, "fp32", verbose=False,
                                        latency_repeats=1)
    assert path.read_bytes() == b"an earlier export"
    assert json.loads(path.with_suffix(".json").read_text())["signs"] == SIGNS  # the new one
    message = (f"{path.with_suffix('.json')}: does not match {path} (sha256 differs: an "
               "interrupted export?); export again")
    for read in (evaluate.export_report, predict.sign_names):
        with pytest.raises(DataError) as raised:
            read(path)
        assert str(raised.value) == message
    assert evaluate_cli.main([str(path), "--data-dir", str(synthetic_data_dir)]) == 2
    assert capsys.readouterr().err == f"tfislr-evaluate: error: {message}\n"

    # A first export killed there leaves a report without a file: "file not found".
    fresh = tmp_path / "fresh.tflite"
    _export_killed_before_renaming_onto(fresh, ensemble, fresh, "fp32", verbose=False,
                                        latency_repeats=1)
    assert fresh.with_suffix(".json").exists() and not fresh.exists()
    assert evaluate_cli.main([str(fresh), "--data-dir", str(synthetic_data_dir)]) == 2
    assert capsys.readouterr().err == f"tfislr-evaluate: error: {fresh}: file not found\n"


def test_a_report_without_the_files_sha256_is_refused(tmp_path, exported):
    _, fp32_path, _ = exported
    path = tmp_path / "model.tflite"
    path.write_bytes(fp32_path.read_bytes())
    report = json.loads(fp32_path.with_suffix(".json").read_text())
    assert pair.read_report(fp32_path) == report
    del report["sha256"]  # a report of an export before reports recorded it
    path.with_suffix(".json").write_text(json.dumps(report))
    with pytest.raises(DataError, match=r"model.json: records no sha256 of .*model.tflite"):
        pair.read_report(path)
    path.with_suffix(".json").write_text("{")
    with pytest.raises(DataError, match=r"model.json: not valid JSON"):
        pair.read_report(path)
    path.with_suffix(".json").unlink()
    assert pair.read_report(path) == {}  # a file exported elsewhere has no report


def test_a_successful_export_removes_an_earlier_rejected_pair(tmp_path, exported, monkeypatch):
    ensemble, fp32_path, fixture_report = exported
    monkeypatch.setattr(graph, "convert", lambda *args, **kwargs: fp32_path.read_bytes())
    path = tmp_path / "model.tflite"
    with pytest.raises(ExportError):
        export_ensemble(ensemble, path, "fp32", max_size_mb=0.001, verbose=False)
    rejected, rejected_report = pair.rejected_paths(path)
    assert pair.read_report(rejected)["error"]  # a pair too: its report matches its file
    # Passes the checks: their results are the fixture's (same file), not measured again.
    passed = {key: fixture_report[key] for key in ("size", "parity", "edge_cases", "latency")}
    monkeypatch.setattr(ensemble_lib, "_check_file", lambda report, *a, **k: report.update(passed))
    export_ensemble(ensemble, path, "fp32", verbose=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.tflite"]
    assert pair.read_report(path)["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_unreadable_parity_clips_are_skipped_and_named(tmp_path, exported, monkeypatch,
                                                       synthetic_data_dir, capsys):
    """A missing or truncated clip of --parity-data is left out with one line naming it;
    the check runs on the others. With no readable clip the export fails before converting."""
    import shutil

    import export as export_cli
    import pandas as pd

    ensemble, fp32_path, _ = exported
    data = shutil.copytree(synthetic_data_dir, tmp_path / "data")
    paths = pd.read_csv(data / "train.csv")["path"]
    truncated, missing = data / paths.iloc[0], data / paths.iloc[len(paths) - 1]  # both chosen
    truncated.write_bytes(truncated.read_bytes()[:100])
    missing.unlink()
    monkeypatch.setattr(graph, "convert", lambda *args, **kwargs: fp32_path.read_bytes())
    report = export_ensemble(ensemble, tmp_path / "model.tflite", "fp32", parity_clips=data,
                             latency_repeats=1)
    out = capsys.readouterr().out
    assert report["parity"]["num_sequences"] == 16 - 2
    assert [m.split(": ")[0] for m in report["parity_skipped"]] == [str(truncated), str(missing)]
    for message in report["parity_skipped"]:
        assert out.count(message) == 1
    assert "(2 unreadable clips skipped)" in out

    # No readable clip: one error line, and no conversion was started.
    for path in paths:
        (data / path).unlink(missing_ok=True)
    monkeypatch.setattr(graph, "convert", lambda *a, **k: pytest.fail("converted"))
    run = write_run(tmp_path / "run", ensemble[0].model, ensemble[0].max_len)
    assert export_cli.main(["single", "--run", str(run), "--parity-data", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tfislr-export: error: {data}: none of the 16 clips chosen from "
                          f"train.csv can be read ({truncated}: file not found; ")
    assert err.endswith("; and 13 more)\n")


def weight_types(model_content):
    """Element types of the constant tensors (the weights) in a flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(bytearray(model_content), 0)
    graph = model.Subgraphs(0)
    types = {}
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        if model.Buffers(tensor.Buffer()).DataLength() > 256:  # large constants only
            name = names[tensor.Type()]
            types[name] = types.get(name, 0) + 1
    return types


@pytest.mark.parametrize(
    # int8 runs in CI through test_int8_agreement_with_fp32_is_measured (with data); this
    # case (no data: agreement on the parity clips, no accuracy) is slow only.
    "quantization", ["fp16", pytest.param("int8", marks=pytest.mark.slow)]
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


def test_int8_agreement_with_fp32_is_measured(tmp_path, synthetic_data_dir, capsys, monkeypatch):
    """Top-1 agreement, max probability diff and accuracy change, recomputed here."""
    from tfislr.data.kaggle import read_sign_map, sign_names
    from tfislr.export.ensemble import AGREEMENT_SEQUENCES
    from tfislr.export.runner import TFLiteRunner

    signs = sign_names(read_sign_map(synthetic_data_dir))
    clips, labels, _, participants = checks.clips_from_data_dir(
        synthetic_data_dir, AGREEMENT_SEQUENCES, with_labels=True)
    # The member validated on every signer of the clips but one, so it trained on that one.
    trained_on = int(participants[0])
    split = {"full": False, "fold": 0, "num_folds": 4, "fold_seed": 42, "original_folds": True,
             "val_participants": sorted(int(p) for p in set(participants) - {trained_on})}
    member = EnsembleMember("one", small_model(len(signs), 12, seed=4), 12, signs, split=split)
    path = tmp_path / "int8.tflite"
    conversions = []  # (module, quantization, flatbuffer) of each conversion the export made
    convert = graph.convert

    def recording_convert(module, quantization, **kwargs):
        conversions.append((module, quantization, convert(module, quantization, **kwargs)))
        return conversions[-1][2]

    monkeypatch.setattr(graph, "convert", recording_convert)
    agreement = export_ensemble([member], path, "int8", parity_clips=synthetic_data_dir,
                                latency_repeats=1)["agreement"]
    printed = capsys.readouterr().out
    assert "vs fp32  top-1 agreement" in printed
    trained = int(np.sum(participants == trained_on))
    assert 0 < trained < len(clips)
    assert agreement["accuracy"]["data"] == checks.TRAINING
    assert agreement["accuracy"]["training_clips"] == trained
    assert (f"on training data ({trained} of {len(clips)} clips are of signers a member "
            "trained on)") in printed
    assert json.loads(path.with_suffix(".json").read_text())["agreement"] == agreement
    types = weight_types(path.read_bytes())
    assert types.get("INT8", 0) > types.get("FLOAT32", 0), types

    # The reference is an fp32 conversion of the graph that was quantized (converting the
    # same graph again would give the same flatbuffer: it is not done a second time here).
    (int8_module, int8, _), (fp32_module, fp32, fp32_content) = conversions
    assert (int8, fp32) == ("int8", "fp32") and fp32_module is int8_module
    assert "INT8" not in weight_types(fp32_content) and weight_types(fp32_content)["FLOAT32"]
    fp32_path = tmp_path / "fp32.tflite"
    fp32_path.write_bytes(fp32_content)
    expected = np.stack([TFLiteRunner(fp32_path)(clip) for clip in clips])
    got = np.stack([TFLiteRunner(path)(clip) for clip in clips])
    assert agreement["num_sequences"] == len(clips) > 1
    assert agreement["top1_agreement"] == np.mean(expected.argmax(1) == got.argmax(1))
    assert agreement["max_prob_diff"] == pytest.approx(np.abs(expected - got).max(), rel=1e-5)
    assert 0 < agreement["max_prob_diff"] <= checks.PARITY_TOLERANCE["int8"]
    accuracy = agreement["accuracy"]
    assert accuracy["fp32"] == np.mean(expected.argmax(1) == labels)
    assert accuracy["quantized"] == np.mean(got.argmax(1) == labels)
    assert accuracy["difference"] == accuracy["quantized"] - accuracy["fp32"]


def test_int8_parity_data_reads_each_clip_once(synthetic_data_dir, monkeypatch):
    """The parity clips are some of the labelled ones (the old code read them twice)."""
    from tfislr.data import kaggle

    reads = []
    read = kaggle.read_landmark_file
    monkeypatch.setattr(kaggle, "read_landmark_file",
                        lambda path, **kwargs: reads.append(path) or read(path, **kwargs))
    clips, labelled, skipped = ensemble_lib._parity_inputs(synthetic_data_dir, "int8", print)
    assert len(reads) == len(set(reads)) == len(labelled[0]) > checks.PARITY_SEQUENCES
    assert len(clips) == checks.PARITY_SEQUENCES and skipped == []
    assert all(any(clip is other for other in labelled[0]) for clip in clips)
    reads.clear()
    clips, labelled, _ = ensemble_lib._parity_inputs(synthetic_data_dir, "fp16", print)
    assert labelled is None and len(reads) == len(clips) == checks.PARITY_SEQUENCES


def test_without_an_int8_accuracy_the_report_says_why(exported, monkeypatch):
    """Labelled data of other signs is not "no labelled data": the line names the mismatch."""
    monkeypatch.setattr(graph, "convert", lambda module, quantization: b"fp32 flatbuffer")
    monkeypatch.setattr(checks, "check_agreement", lambda reference, path, clips, labels, _: {
        "top1_agreement": 1.0, "max_prob_diff": 0.01, "num_sequences": len(clips),
        "accuracy": None if labels is None else {"labels": list(labels)}})
    signs = ["a", "b", "c"]

    def agreement(data_signs, model_signs=signs):
        labelled = None if data_signs is None else ([0, 0], [1, 2], data_signs, [7, 8])
        return ensemble_lib._int8_agreement(None, "int8.tflite", [0], labelled, model_signs,
                                            3, [None])

    assert agreement(signs)["accuracy"] == {"labels": [1, 2]} and "no_accuracy" not in \
        agreement(signs)
    assert agreement(["x", "y", "z"], None)["accuracy"] is not None  # only the count known
    whys = {
        None: "pass labelled data (--parity-data DATA_DIR) to measure it",
        ("a", "b"): "not measured: the parity data has 2 signs, the model 3",
        ("a", "c", "b"): "not measured: the parity data's sign map is not the model's (label 1 "
                         "is 'c' there, 'b' in the model)",
    }
    _, _, report = exported
    for data_signs, why in whys.items():
        result = agreement(None if data_signs is None else list(data_signs))
        assert result["accuracy"] is None and result["no_accuracy"] == why
        line = next(line for line in ensemble_lib.format_report(
            {**report, "agreement": result}).splitlines() if line.startswith("  vs fp32"))
        assert line.endswith(f"over {result['num_sequences']} clips; accuracy: {why}"), line


def test_the_int8_accuracy_says_whether_its_clips_are_held_out():
    """By the members' recorded splits (as evaluate's --fold): held out only when every
    member recorded one and validated on every clip's signer."""
    participants = np.array([3, 5, 5, 8])
    validated = {"full": False, "val_participants": [3, 5, 8]}
    assert checks.training_use(participants, [validated, validated]) == {
        "data": checks.HELD_OUT, "training_clips": 0}
    assert checks.training_use(participants, [validated, {**validated, "val_participants": [5]}]) \
        == {"data": checks.TRAINING, "training_clips": 2}
    assert checks.training_use(participants, [validated, {"full": True, "val_participants": []}]) \
        == {"data": checks.TRAINING, "training_clips": 4}
    assert checks.training_use(participants, [validated, None]) == {
        "data": checks.UNKNOWN, "training_clips": 0}
    assert checks.training_use(participants, [{"full": True, "val_participants": []}, None]) \
        == {"data": checks.TRAINING, "training_clips": 4}
    agreement = {"num_sequences": 4}
    said = {data: ensemble_lib._accuracy_data({"data": data, "training_clips": 2}, agreement)
            for data in (checks.HELD_OUT, checks.TRAINING, checks.UNKNOWN)}
    assert said == {
        checks.HELD_OUT: "on held-out data (no member trained on these clips' signers)",
        checks.TRAINING: "on training data (2 of 4 clips are of signers a member trained on)",
        checks.UNKNOWN: "on data that may be training data (a member records no split)"}


def test_members_must_agree_on_classes():
    with pytest.raises(ValueError, match="disagree on num_classes"):
        check_members_agree([
            EnsembleMember("a", small_model(NUM_CLASSES, 8), 8),
            EnsembleMember("b", small_model(NUM_CLASSES + 1, 8), 8),
        ])
    swapped = SIGNS[:2][::-1] + SIGNS[2:]
    with pytest.raises(ValueError, match="disagree on the sign order: label 0"):
        check_members_agree([
            EnsembleMember("a", small_model(NUM_CLASSES, 8), 8, SIGNS),
            EnsembleMember("b", small_model(NUM_CLASSES, 8), 8, swapped),
        ])


FULL_FIT = {"full": True, "fold": None, "num_folds": None, "fold_seed": None,
            "original_folds": None, "val_participants": []}
FOLD_0 = {"full": False, "fold": 0, "num_folds": 4, "fold_seed": 42, "original_folds": True,
          "val_participants": [3, 5]}


def write_run(run_dir, model, max_len, signs=SIGNS, name="tiny", split=FULL_FIT):
    """A run dir as training writes it (only the files export reads)."""
    from tfislr.config import config_from_dict

    (run_dir / "models").mkdir(parents=True)
    config = config_from_dict({"name": name, "data": {"max_len": max_len}, "model": TINY})
    config.to_json(run_dir / "config.json")
    RunDir(run_dir).write_run_info(split)
    (run_dir / "signs.json").write_text(json.dumps(signs))
    model.save(run_dir / "models" / "distilled_soup.keras")
    RunDir(run_dir).mark_finished()
    return run_dir


def test_members_of_one_config_are_checked_and_named_one_by_one(tmp_path, exported):
    """Two runs of one config share its name: each is checked on its own (the old check
    keyed the class counts by name, so two `tiny` members with 7 and 8 classes passed it)
    and named by its run dir, in the errors and in the export's summary line."""
    from tfislr.export.members import resolve_member

    def check(*runs):
        check_members_agree([resolve_member(str(run)) for run in runs])

    base = write_run(tmp_path / "tiny" / "a", small_model(NUM_CLASSES, 8), 8)
    swapped = write_run(tmp_path / "tiny" / "b", small_model(NUM_CLASSES, 8), 8,
                        signs=SIGNS[:2][::-1] + SIGNS[2:])
    more = write_run(tmp_path / "tiny" / "c", small_model(NUM_CLASSES + 1, 8), 8,
                     signs=SIGNS + ["extra"])
    with pytest.raises(ValueError) as order:
        check(base, swapped)
    assert str(order.value) == (
        f"ensemble members 'tiny ({base}, distilled)' and 'tiny ({swapped}, distilled)' "
        "disagree on the sign order: label 0 is 'sign_0' vs 'sign_1'")
    with pytest.raises(ValueError) as counts:
        check(base, more)
    assert str(counts.value) == (
        f"ensemble members disagree on num_classes: tiny ({base}, distilled) outputs "
        f"{NUM_CLASSES}, tiny ({more}, distilled) outputs {NUM_CLASSES + 1}")
    # Without signs.json, only the class counts tell them apart.
    with pytest.raises(ValueError, match="disagree on num_classes"):
        check_members_agree([EnsembleMember("a", small_model(NUM_CLASSES, 8), 8),
                             EnsembleMember("a", small_model(NUM_CLASSES + 1, 8), 8)])

    _, _, report = exported
    report = {**report, "members": [{**m, "name": "tiny", "run_dir": str(run)}
                                    for m, run in zip(report["members"], (base, swapped))]}
    first_line = ensemble_lib.format_report(report).splitlines()[0]
    assert f"2 member(s): tiny ({base}): max_len 8, " in first_line
    assert f"; tiny ({swapped}): max_len 20, " in first_line


def test_latest_run_skips_unfinished_runs(tmp_path):
    runs = tmp_path / "runs"
    for name in ("20260101-000000", "20251201-000000"):
        (runs / "tiny" / name / "models").mkdir(parents=True)
        (runs / "tiny" / name / "models" / "distilled_soup.keras").write_bytes(b"")
        (runs / "tiny" / name / "run.json").write_text(json.dumps(FULL_FIT))  # start: its name
        RunDir(runs / "tiny" / name).mark_finished()
    (runs / "tiny" / "20260301-000000").mkdir()  # still training
    assert latest_run("tiny", runs).name == "20260101-000000"
    with pytest.raises(ValueError, match="no finished run"):
        latest_run("tiny", runs, weights="teacher")
    with pytest.raises(ValueError, match="folder not found \\(no runs of config 'other'\\)"):
        latest_run("other", runs)


def test_cli_ensemble_yaml_and_single_run(tmp_path, monkeypatch):
    """export.py on run dirs: by config name (latest run) via YAML, and `single --run`."""
    import export as export_cli

    runs = tmp_path / "runs"
    model = small_model(NUM_CLASSES, 12, seed=3)
    write_run(runs / "tiny" / "20260101-000000", small_model(NUM_CLASSES, 12, seed=9), 12)
    latest = write_run(runs / "tiny" / "20260102-000000", model, 12)
    yaml_path = tmp_path / "ens.yaml"
    out = tmp_path / "out" / "tinyens.tflite"
    yaml_path.write_text(
        f"name: tinyens\nmembers:\n  - config: tiny\nruns_dir: {runs}\n"
        f"output: {out}\nquantization: fp32\n"
    )
    assert export_cli.main(["ensemble", "--config", str(yaml_path)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["members"][0]["run_dir"] == str(latest)
    assert report["quantization"] == "fp32" and report["signs"] == SIGNS

    # The file holds the latest run's weights: compare with that model directly.
    _, runner = runner_for(out)
    clip = checks.probe_sequences(lengths=[30], seed=2)[0]
    from tfislr.preprocessing import Preprocess

    points = Preprocess(12)(tf.constant(clip))[tf.newaxis]
    logits = model({"landmarks": points, "padding_mask": tf.ones(tf.shape(points)[:2])})
    np.testing.assert_allclose(runner(inputs=clip)["outputs"],
                               keras.ops.convert_to_numpy(keras.ops.softmax(logits[0])),
                               atol=1e-5)

    # `single --run` loads the same run: reuse the flatbuffer (the checks still run on it).
    monkeypatch.setattr(graph, "convert", lambda *args, **kwargs: out.read_bytes())
    assert export_cli.main(["single", "--run", str(latest), "--quantization", "fp32"]) == 0
    single = json.loads((latest / "model.json").read_text())
    assert (latest / "model.tflite").exists() and single["members"][0]["run_dir"] == str(latest)
    assert export_cli.main(["single", "--run", str(tmp_path / "nope")]) == 2  # tfislr.errors


def test_a_config_name_exports_full_fits_only_and_says_which_runs(tmp_path, exported):
    """A fold run (newer than the full fit, or the only run) never becomes the export of a
    config name unnoticed: the lookup takes full fits, a fold run is used when named, and
    the report and the summary's last line say which runs on which data."""
    from tfislr.export.members import resolve_member, training_data

    runs = tmp_path / "runs"
    fold = write_run(runs / "tiny" / "20260102-000000", small_model(NUM_CLASSES, 8), 8,
                     split=FOLD_0)
    with pytest.raises(ValueError, match="no finished full-fit run .* fold run is exported "
                                         "only when named: `run: " + str(fold)):
        latest_run("tiny", runs)
    full = write_run(runs / "tiny" / "20260101-000000", small_model(NUM_CLASSES, 8), 8)
    assert latest_run("tiny", runs) == full
    newer = write_run(runs / "tiny" / "20260103-000000", small_model(NUM_CLASSES, 8), 8,
                      split=FOLD_0)
    assert latest_run("tiny", runs) == full  # the fold run started last is passed over
    assert resolve_member("tiny", runs_dir=runs).run_dir == str(full)
    assert resolve_member(str(newer)).run_dir == str(newer)  # a run dir given: used
    assert resolve_member({"run": str(fold)}).run_dir == str(fold)  # named: used
    assert training_data(FULL_FIT) == "all the data (full fit)"
    assert training_data(FOLD_0) == "all but fold 0 of 4 (2 signers held out)"
    _, _, report = exported
    members = [{**report["members"][0], "run_dir": str(run), "split": split, "weights": "distilled",
                "trained_on": training_data(split)} for run, split in ((full, FULL_FIT),
                                                                     (fold, FOLD_0))]
    last = ensemble_lib.format_report({**report, "members": members}).splitlines()[-1]
    assert last == (f"  runs     {members[0]['name']} ({full}, distilled) trained on all the data "
                    f"(full fit); {members[0]['name']} ({fold}, distilled) trained on all but "
                    "fold 0 of 4 (2 signers held out)")


def test_single_run_errors_name_the_option(tmp_path, capsys):
    """`single --run` errors say "--run", never "an ensemble member"; a CV dir names its
    fold_K/ runs (in an ensemble too)."""
    import export as export_cli

    run = write_run(tmp_path / "cv" / "fold_1", small_model(NUM_CLASSES, 8), 8)
    expected = {
        run / "config.json": f"{run / 'config.json'}: is a file, not a run dir (--run); the run "
                             f"dir holding it is {run}",
        tmp_path / "nope": f"{tmp_path / 'nope'}: run dir not found (--run)",
        tmp_path / "cv": f"{tmp_path / 'cv'}: is a cross-validation dir, not a run dir: its "
                         f"runs are in its fold_K/ subfolders (fold_1); give one of them, "
                         f"e.g. {run}",
    }
    for given, message in expected.items():
        assert export_cli.main(["single", "--run", str(given)]) == 2
        assert capsys.readouterr().err == f"tfislr-export: error: {message}\n"
    with pytest.raises(DataError, match="is a cross-validation dir"):
        export_ensemble([{"run": str(tmp_path / "cv")}], tmp_path / "x.tflite", verbose=False)
    with pytest.raises(ConfigError, match=r"not a run dir \(an ensemble member\)"):
        export_ensemble([{"run": str(run / "config.json")}], tmp_path / "x.tflite",
                        verbose=False)


def test_bad_ensemble_config_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("members:\n  - config: a\n    run: b\n")
    with pytest.raises(ValueError, match="exactly one of 'config' or 'run'"):
        export_ensemble(path, tmp_path / "x.tflite", verbose=False)
    path.write_text("member: []\n")
    with pytest.raises(ValueError, match="unknown key"):
        export_ensemble(path, tmp_path / "x.tflite", verbose=False)
    with pytest.raises(ValueError, match="quantization must be one of"):
        export_ensemble(members()[:1], tmp_path / "x.tflite", "int4", verbose=False)


@pytest.mark.parametrize("text, key", [
    ("name: null\nmembers: [demo]\n", "name"),
    ("members: [demo]\nquantization:\n", "quantization"),
    ("members:\n", "members"),
    ("members:\n  - demo\n  -\n", "members[1]"),
    ("members:\n  - config: demo\n    weights: null\n", "members[0].weights"),
])
def test_an_empty_ensemble_value_names_the_file_and_key(tmp_path, text, key):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_ensemble_config(path)
    assert str(raised.value) == (f"{path}: config key '{key}' is empty (null); give it a value, "
                                 "or delete the key to use its default")


@pytest.mark.slow
@pytest.mark.ci
def test_full_size_ensemble_fits_kaggle_limit(tmp_path):
    """The real len25 + len80 distilled dimensions, 250 classes, fp16: <= 40 MB."""
    from tfislr.config import load_config
    from tfislr.model import build_classifier

    ensemble = []
    for name in ("len25", "len80"):
        config = load_config(name)
        model = build_classifier(config.model, 250, config.data.max_len, distilled=True)
        ensemble.append(EnsembleMember(name, model, config.data.max_len))
    report = export_ensemble(ensemble, tmp_path / "full.tflite", "fp16", verbose=False,
                             latency_repeats=1)
    assert report["size"]["mb"] <= 40.0
    assert report["num_classes"] == 250
