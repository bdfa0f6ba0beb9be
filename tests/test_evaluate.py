"""Kaggle-style scoring of an exported file: same answers as the Keras model, folds, CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest

import keras
import tensorflow as tf

from tfislr.cli import evaluate as evaluate_cli
from tfislr import evaluate, landmarks
from tfislr.data.kaggle import landmark_path
from tfislr.export import EnsembleMember, export_ensemble

from tiny_exports import untrained_model

NUM_SIGNS = 6  # the shared synthetic_data_dir fixture
MAX_LEN = 12


@pytest.fixture(scope="module")
def data_dir(synthetic_data_dir):
    return synthetic_data_dir


@pytest.fixture(scope="module")
def exported(synthetic_export):
    """(Keras model, .tflite path) of the session's tiny export on the synthetic signs."""
    model, path, _ = synthetic_export
    return model, path


def keras_logits(model, data_dir, table):
    """The Keras model's logits as validation computes them: one zero-padded, masked batch.

    No TFLite code path is involved; only `Preprocess` is shared with the exported graph.
    """
    from tfislr.data.kaggle import read_landmark_file
    from tfislr.preprocessing import Preprocess

    preprocess = Preprocess(MAX_LEN)
    points = np.zeros((len(table), MAX_LEN, landmarks.NUM_POINTS, 3), np.float32)
    mask = np.zeros((len(table), MAX_LEN), np.float32)
    for i, path in enumerate(table["path"]):
        clip = preprocess(tf.constant(read_landmark_file(landmark_path(data_dir, path)))).numpy()
        points[i, : len(clip)] = clip
        mask[i, : len(clip)] = 1.0
    logits = model({"landmarks": points, "padding_mask": mask}, training=False)
    return keras.ops.convert_to_numpy(logits)


def test_matches_keras_model_accuracy(exported, data_dir):
    from tfislr.data.kaggle import read_train_csv

    model, path = exported
    report = evaluate.evaluate_tflite(path, data_dir)
    table = read_train_csv(data_dir)
    logits = keras_logits(model, data_dir, table)
    labels = table["label"].to_numpy()
    assert report["num_sequences"] == len(table)
    np.testing.assert_array_equal(report["predictions"], np.argmax(logits, axis=1))
    assert report["accuracy"] == pytest.approx(np.mean(np.argmax(logits, axis=1) == labels))
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert report["top5_accuracy"] == pytest.approx(np.mean((top5 == labels[:, None]).any(1)))
    for sign, row in report["per_sign"].items():
        rows = table["sign"].to_numpy() == sign
        assert row["accuracy"] == pytest.approx(np.mean(np.argmax(logits[rows], 1) == labels[rows]))
    per_sign_n = sum(row["n"] for row in report["per_sign"].values())
    assert per_sign_n == len(table)
    assert report["latency"]["median_ms"] > 0 and report["size"]["bytes"] == path.stat().st_size


def test_fold_scores_only_held_out_signers(exported, data_dir):
    from tfislr.data.folds import fold_indices
    from tfislr.data.kaggle import read_train_csv

    _, path = exported
    table = read_train_csv(data_dir)
    seen = []
    for fold in range(4):
        train_idx, val_idx = fold_indices(table, fold, num_folds=4, seed=42)
        report = evaluate.evaluate_tflite(path, data_dir, fold=fold)
        held_out = table.iloc[val_idx]
        assert sorted(report["sequence_ids"]) == sorted(held_out["sequence_id"].tolist())
        assert not set(held_out["participant_id"]) & set(table.iloc[train_idx]["participant_id"])
        seen += report["sequence_ids"]
    assert sorted(seen) == sorted(table["sequence_id"].tolist())  # folds partition the data
    with pytest.raises(ValueError, match="--fold must be in"):
        evaluate.evaluate_tflite(path, data_dir, fold=4)


@pytest.mark.large  # a second model saved and exported
def test_fold_uses_the_split_recorded_with_the_model(data_dir, tmp_path, capsys):
    """A run validated on fold 1 of 5 (`data.num_folds=5`): its export scores exactly the
    run's validation signers, not fold 1 of the default 4 folds (issue 9.7)."""
    from tfislr.config import load_config
    from tfislr.data.folds import fold_indices
    from tfislr.data.kaggle import read_sign_map, read_train_csv
    from tfislr.runs.run_dir import RunDir

    table = read_train_csv(data_dir)
    _, val_rows = fold_indices(table, 1, num_folds=5, seed=42)
    val_participants = sorted(int(p) for p in set(table["participant_id"].iloc[val_rows]))
    _, default_rows = fold_indices(table, 1)  # what evaluate rebuilt before
    assert sorted(default_rows) != sorted(val_rows)  # else this test could not tell them apart
    split = {"full": False, "fold": 1, "num_folds": 5, "fold_seed": 42, "original_folds": True,
             "val_participants": val_participants}
    run = RunDir(tmp_path / "runs" / "demo" / "20260101-000000")
    run.write_config(load_config("demo", ["data.num_folds=5", f"data.max_len={MAX_LEN}"]))
    sign_map = read_sign_map(data_dir)
    run.write_signs(sorted(sign_map, key=sign_map.get))
    run.write_run_info({"config": "demo", **split})
    run.save_model("distilled", untrained_model(NUM_SIGNS, MAX_LEN))
    run.mark_finished()
    path = tmp_path / "model.tflite"
    export_ensemble([{"run": str(run.path)}], path, "fp32", verbose=False, latency_repeats=1)
    assert json.loads(path.with_suffix(".json").read_text())["members"][0]["split"] == split

    def scored(**kwargs):
        return sorted(evaluate.evaluate_tflite(path, data_dir, **kwargs)["sequence_ids"])

    def rows(indices):
        return sorted(table["sequence_id"].iloc[indices].tolist())

    report = evaluate.evaluate_tflite(path, data_dir, fold=1)
    assert sorted(report["sequence_ids"]) == rows(val_rows)
    assert report["num_folds"] == 5 and report["split"]["val_participants"] == val_participants
    assert "recorded by the run" in report["split"]["source"]
    # Explicit settings still rebuild the folds; a fold the run did not validate on is
    # rebuilt with the run's settings, and the report says its signers were trained on.
    assert scored(fold=1, num_folds=4, fold_seed=42) == rows(default_rows)
    rebuilt = evaluate.evaluate_tflite(path, data_dir, fold=2)
    assert sorted(rebuilt["sequence_ids"]) == rows(fold_indices(table, 2, num_folds=5, seed=42)[1])
    assert "training data" in rebuilt["split"]["source"]
    # The header says "held-out" only for the fold the run validated on (tester5 item 11).
    assert report["split"]["held_out"] is True and rebuilt["split"]["held_out"] is False
    assert "(fold 1 held-out signers)" in evaluate.format_report(report).splitlines()[0]
    header = evaluate.format_report(rebuilt).splitlines()[0]
    assert "(fold 2 signers, not held out: in the training data)" in header
    assert "held-out" not in header
    with pytest.raises(ValueError, match=r"--fold must be in \[0, 5\)"):
        evaluate.evaluate_tflite(path, data_dir, fold=5)
    assert evaluate_cli.main([str(path), "--data-dir", str(data_dir), "--fold", "1"]) == 0
    assert "5 folds, seed 42: the validation signers recorded by the run" in capsys.readouterr().out


def test_held_out_only_when_no_member_trained_on_the_fold():
    """`held_out` from the members' recorded splits: True only when every member validated
    on fold K; a member trained on all the data, or validated on another fold, saw K's
    signers; no recorded split (or given fold settings) cannot tell."""
    def member(fold=None, full=False):
        return {"split": {"full": full, "fold": fold, "num_folds": 4, "fold_seed": 42,
                          "original_folds": True,
                          "val_participants": [] if full else [10 + fold]}}

    def held_out(*members, **given):
        return evaluate.resolve_split({"members": list(members)}, 1, **given)["held_out"]

    assert held_out(member(1)) is True
    assert held_out(member(1), member(1)) is True
    assert held_out(member(1), member(0)) is False
    assert held_out(member(0)) is False
    assert held_out(member(1), member(full=True)) is False
    assert held_out(member(full=True)) is False
    assert held_out() is None
    assert held_out(member(1), num_folds=5) is None
    split = evaluate.resolve_split({"members": [member(1), member(0)]}, 1)
    assert split["val_participants"] == [11] and "fold(s) [0, 1]" in split["source"]


def test_an_empty_original_fold_names_evaluates_own_option(tmp_path):
    """The error's hint is the option of the command that raised it: evaluate has no --set."""
    from tfislr.data.folds import ORIGINAL_FOLDS, fold_indices
    from tfislr.data.kaggle import read_train_csv

    (tmp_path / "sign_to_prediction_index_map.json").write_text('{"a": 0}')
    rows = [f"p/{p}.parquet,{p},{p},a" for fold in (0, 1, 3) for p in ORIGINAL_FOLDS[fold]]
    (tmp_path / "train.csv").write_text("path,participant_id,sequence_id,sign\n"
                                        + "\n".join(rows) + "\n")
    with pytest.raises(ValueError) as raised:
        evaluate.select_sequences(tmp_path, fold=2, num_folds=4, fold_seed=42)
    assert str(raised.value).endswith("choose another fold, or pass --original-folds false "
                                      "for grouped stratified folds")
    assert "data.original_folds" not in str(raised.value)
    with pytest.raises(ValueError, match="or set data.original_folds=false for grouped"):
        fold_indices(read_train_csv(tmp_path), 2)  # train's words (it takes --set) by default


def test_cli_prints_table_and_writes_json(exported, data_dir, tmp_path, capsys):
    _, path = exported
    out = tmp_path / "eval.json"
    assert evaluate_cli.main([str(path), "--data-dir", str(data_dir), "--json-out", str(out),
                          "--limit", "5"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "per-sign accuracy" in printed and "p95" in printed
    report = json.loads(out.read_text())
    assert report["num_sequences"] == 5 and len(report["predictions"]) == 5
    # The header says what was scored: not "all sequences" when --limit cut them.
    total = report["num_available"]
    assert total > 5
    assert printed.splitlines()[0] == f"{path} on {data_dir} (first 5 of {total} sequences)"
    report["fold"] = 1
    assert evaluate.format_report(report).splitlines()[0].endswith(
        f"(first 5 of {total} sequences of fold 1 signers)")
    report.update(num_sequences=total, fold=None)
    assert evaluate.format_report(report).splitlines()[0].endswith("(all sequences)")


def test_sign_order_mismatch_is_refused(exported, data_dir, tmp_path):
    _, path = exported
    copy = tmp_path / "model.tflite"
    copy.write_bytes(path.read_bytes())
    report = json.loads(path.with_suffix(".json").read_text())
    report["signs"] = report["signs"][::-1]
    copy.with_suffix(".json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="does not match the signs .*label 0 is"):
        evaluate.evaluate_tflite(copy, data_dir)


def test_unreadable_files_are_reported_apart_and_fail_unless_allowed(exported, data_dir,
                                                                    tmp_path, capsys):
    import shutil

    from tfislr.data.kaggle import read_train_csv

    _, path = exported
    broken = tmp_path / "data"
    shutil.copytree(data_dir, broken)
    first = read_train_csv(broken)["path"].iloc[0]
    landmark_path(broken, first).write_bytes(b"not a parquet file")
    report = evaluate.evaluate_tflite(path, broken, limit=3)
    assert len(report["errors"]) == 1 and report["predictions"][0] == -1
    assert (report["num_scored"], report["num_unreadable"]) == (2, 1)
    readable = evaluate.evaluate_tflite(path, data_dir, limit=3)
    # The accuracy is of the two readable clips, not of three with one counted wrong.
    correct = np.array(readable["predictions"][1:]) == np.array(readable["labels"][1:])
    assert report["accuracy"] == correct.mean()
    assert sum(row["n"] for row in report["per_sign"].values()) == 2
    assert (f"unreadable    1 file (not scored: the accuracy is of the others): "
            f"{landmark_path(broken, first)}: ") in evaluate.format_report(report)
    args = [str(path), "--data-dir", str(broken), "--limit", "3"]
    assert evaluate_cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"tfislr-evaluate: error: 1 of 3 landmark files could not be "
                              f"read (first: {landmark_path(broken, first)}: ")
    assert evaluate_cli.main(args + ["--allow-unreadable"]) == 0


def test_the_summary_names_the_first_unreadable_files():
    report = {"model": "m.tflite", "data_dir": "d", "fold": None, "num_sequences": 5,
              "num_scored": 0,
              "accuracy": 0.0, "top5_accuracy": 0.0, "per_sign": {},
              "latency": {"median_ms": 1.0, "p95_ms": 1.0, "num_threads": 1},
              "size": {"mb": 1.0, "mib": 1.0},
              "errors": [f"f{i}.parquet: not a parquet file" for i in range(5)]}
    shown = evaluate.UNREADABLE_SHOWN
    line = next(x for x in evaluate.format_report(report).splitlines() if "unreadable" in x)
    assert line.endswith("5 files (not scored: the accuracy is of the others): "
                         + "; ".join(report["errors"][:shown]) + f"; and {5 - shown} more")
    report["errors"] = report["errors"][:1]
    assert evaluate.format_report(report).count("f0.parquet: not a parquet file") == 1


@pytest.mark.large  # a 250-class export
def test_real_sample(exported, real_data_dir, tmp_path):
    """Real parquet files through the reader and a 250-class exported file."""
    from tfislr.data.kaggle import read_sign_map

    _, path = exported
    with pytest.raises(ValueError, match="outputs 6 classes but .* has 250 signs"):
        evaluate.evaluate_tflite(path, real_data_dir, limit=2)
    sign_map = read_sign_map(real_data_dir)
    signs = sorted(sign_map, key=sign_map.get)
    real_path = tmp_path / "real.tflite"
    member = EnsembleMember("tiny", untrained_model(250, MAX_LEN), MAX_LEN, signs)
    export_ensemble([member], real_path, "fp32", verbose=False, latency_repeats=1)
    report = evaluate.evaluate_tflite(real_path, real_data_dir)
    assert report["errors"] == [] and report["num_sequences"] >= 100
    assert set(report["per_sign"]) == {"hello", "thankyou"}
    assert all(0 <= p < 250 for p in report["predictions"])
    # The split line says what decided the folds: the original's map has no seed.
    for original, scheme in ((None, "4 folds, the original's folds (its participant->fold map, "
                                    "no seed): folds rebuilt with the config defaults"),
                             (False, "4 folds, seed 42: folds rebuilt with the given")):
        folded = evaluate.evaluate_tflite(real_path, real_data_dir, fold=0,
                                          original_folds=original)
        assert folded["split"]["original_map"] is (original is None)
        assert f"split         {scheme}" in evaluate.format_report(folded)


@pytest.mark.extra_large  # extra_large for the CI budget (82 s): CI trains, exports and reads a short
# run in test_notebook, checks parity in tests/export/ and scores the real sample above
def test_demo_run_export_matches_validation_accuracy(synthetic_data_dir, tmp_path):
    """Train (briefly) → export the distilled soup → evaluate fold 0 = training's val accuracy."""
    from tfislr.config import load_config
    from tfislr.training.run import train

    config = load_config("demo", overrides=["train.epochs=4", "train.soup_last_n=2"])
    run_dir = train(config, synthetic_data_dir, tmp_path / "runs", fold=0, verbose=0)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = metrics["models"]["distilled"]["soup_accuracy"]
    path = tmp_path / "demo.tflite"
    export_ensemble([{"run": str(run_dir)}], path, "fp16", verbose=False,
                    parity_clips=synthetic_data_dir)
    report = evaluate.evaluate_tflite(path, synthetic_data_dir, fold=0,
                                      num_folds=config.data.num_folds,
                                      fold_seed=config.data.fold_seed)
    assert report["num_sequences"] == metrics["run"]["num_val"]
    assert abs(report["accuracy"] - expected) <= 0.005


def test_json_prints_on_stdout_and_json_out_writes_a_file(exported, data_dir, tmp_path, capfd):
    """One convention (tfislr.cli.json_output): --json = JSON on stdout instead of the table,
    --json-out PATH = the same JSON in a file."""
    from tfislr.cli import predict as predict_cli
    from tfislr.data.kaggle import read_train_csv

    _, path = exported
    out = tmp_path / "eval.json"
    assert evaluate_cli.main([str(path), "--data-dir", str(data_dir), "--json",
                              "--json-out", str(out), "--limit", "3"]) == 0
    captured = capfd.readouterr()
    assert json.loads(captured.out) == json.loads(out.read_text())
    assert json.loads(captured.out)["num_sequences"] == 3
    assert "XNNPACK" not in captured.err
    clip = str(landmark_path(data_dir, read_train_csv(data_dir)["path"].iloc[0]))
    predictions = tmp_path / "p.json"
    assert predict_cli.main([str(path), clip, "--json-out", str(predictions)]) == 0
    captured = capfd.readouterr()
    assert captured.out.startswith(f"{clip}  (")  # the table
    assert json.loads(predictions.read_text())[0]["clip"] == clip


@pytest.mark.large  # a fresh process imports TensorFlow
def test_predict_stderr_has_no_xnnpack_line(exported, data_dir):
    """LiteRT logs "INFO: Created TensorFlow Lite XNNPACK delegate" from C++, once a process
    (so a fresh one), on file descriptor 2; a command's stderr never shows it."""
    from tfislr.data.kaggle import read_train_csv

    _, path = exported
    clip = str(landmark_path(data_dir, read_train_csv(data_dir)["path"].iloc[0]))
    done = subprocess.run([sys.executable, "-m", "tfislr.cli.predict", str(path), clip, "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["clip"] == clip
    assert "XNNPACK" not in done.stderr, done.stderr
