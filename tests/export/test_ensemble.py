"""export.ensemble: the ensemble config file, the int8 agreement and accuracy in the report,
and the full-size (len25 + len80) export within Kaggle's limit (the `large` test)."""

import json

import numpy as np
import pytest

from tfislr.errors import ConfigError
from tfislr.export import checks, export_ensemble, graph
from tfislr.export import ensemble as ensemble_lib
from tfislr.text import plural
from tfislr.export.ensemble import load_ensemble_config
from tfislr.export.members import EnsembleMember

from tiny_exports import members, small_model, weight_types


@pytest.mark.large  # an int8 conversion with calibration data
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
        assert line.endswith(f"over {plural(result['num_sequences'], 'clip')}; accuracy: {why}"), line


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


@pytest.mark.large
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
