"""Cross-validation, out-of-fold predictions and blending (tfislr.training.cross_validation,
tfislr.runs.oof, tfislr.blend)."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tfislr.cli import blend as blend_cli
from tfislr.cli import cv as cv_cli
from tfislr import blend as blend_lib
from tfislr.runs.oof import OutOfFold, accuracy_by_fold, read_oof, write_oof
from subprocess_runs import backed_up_epoch, env, run_until_killed

REPO = pathlib.Path(__file__).resolve().parents[2]


def fake_oof(seed=0, sizes=(5, 9, 3), num_signs=4, info=None):
    """OOF predictions of folds of different sizes, ids in scrambled order."""
    rng = np.random.default_rng(seed)
    total = sum(sizes)
    table = pd.DataFrame({
        "sequence_id": rng.permutation(np.arange(1000, 1000 + total)),
        "participant_id": np.repeat(np.arange(len(sizes)), sizes) + 10,
        "fold": np.repeat(np.arange(len(sizes)), sizes),
        "label": rng.integers(0, num_signs, total),
    })
    probabilities = rng.dirichlet(np.ones(num_signs), total).astype(np.float32)
    return OutOfFold(table, probabilities, [f"sign{i}" for i in range(num_signs)], info or {})


# ------------------------------------------------------------------------------- fast tests
def test_overall_accuracy_is_the_clip_weighted_mean_of_the_folds():
    oof = fake_oof(sizes=(5, 9, 3))
    scores = oof.scores()
    folds = scores["folds"]
    weighted = sum(f["clips"] * f["accuracy"] for f in folds.values()) / scores["clips"]
    assert scores["accuracy"] == pytest.approx(weighted, abs=1e-12)
    assert scores["clips"] == len(oof) == 17
    # Folds of different sizes and accuracies: the plain mean of the folds is another number.
    labels, predictions = np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0])
    scores = accuracy_by_fold(labels, predictions, np.array([0, 0, 0, 1]))
    assert scores["accuracy"] == 0.75 and np.mean([f["accuracy"] for f in scores["folds"].values()]) == 0.5


def test_oof_file_round_trip_sorted_by_sequence_id(tmp_path):
    oof = fake_oof(info={"config": "demo"})
    path = write_oof(oof, tmp_path / "oof.parquet")
    back = read_oof(path)
    assert back.signs == oof.signs and back.info == {"config": "demo"}
    pd.testing.assert_frame_equal(back.table, oof.table)
    np.testing.assert_array_equal(back.probabilities, oof.probabilities)
    assert np.all(np.diff(back.table["sequence_id"]) > 0)
    # Plain pandas reads it too: one array of probabilities per clip.
    frame = pd.read_parquet(path)
    np.testing.assert_array_equal(np.stack(frame["probabilities"]), oof.probabilities)


def test_oof_rejects_duplicates_and_wrong_shapes(tmp_path):
    oof = fake_oof()
    table = pd.concat([oof.table, oof.table.iloc[:1]], ignore_index=True)
    with pytest.raises(ValueError, match="more than once"):
        OutOfFold(table, np.concatenate([oof.probabilities, oof.probabilities[:1]]), oof.signs)
    with pytest.raises(ValueError, match=r"clips × signs"):
        OutOfFold(oof.table, oof.probabilities[:, :2], oof.signs)
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="x.parquet: not a parquet file"):
        read_oof(tmp_path / "x.parquet")
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "y.parquet")
    with pytest.raises(ValueError, match="y.parquet: not an OOF predictions file"):
        read_oof(tmp_path / "y.parquet")


def test_blend_of_a_run_with_itself_equals_the_run(tmp_path):
    oof = read_oof(write_oof(fake_oof(), tmp_path / "oof.parquet"))
    same = blend_lib.blend([oof, oof])
    np.testing.assert_array_equal(same.probabilities, oof.probabilities)
    pd.testing.assert_frame_equal(same.table, oof.table)
    np.testing.assert_allclose(blend_lib.blend([oof] * 3, [1, 2, 4]).probabilities,
                               oof.probabilities, rtol=1e-6)
    report, _ = blend_lib.compare({"a": oof, "b": oof})
    assert [row["accuracy"] for row in report["rows"]] == [oof.scores()["accuracy"]] * 3


def test_blend_is_the_weighted_mean_of_probabilities():
    a, b = fake_oof(seed=0), fake_oof(seed=0)
    b.probabilities = np.roll(b.probabilities, 1, axis=1)
    mixed = blend_lib.blend([a, b], [3, 1])
    np.testing.assert_allclose(mixed.probabilities, 0.75 * a.probabilities + 0.25 * b.probabilities,
                               rtol=1e-6)
    np.testing.assert_allclose(mixed.probabilities.sum(1), 1.0, rtol=1e-5)
    assert mixed.info["weights"] == [0.75, 0.25]


def test_blend_refuses_sources_that_do_not_align():
    a = fake_oof()
    other_folds = fake_oof()
    other_folds.table["fold"] = (other_folds.table["fold"] + 1) % 3
    with pytest.raises(ValueError, match="disagree on the fold"):
        blend_lib.blend([a, other_folds], names=["len25", "len80"])
    with pytest.raises(ValueError, match="different clips"):
        blend_lib.blend([a, fake_oof(sizes=(5, 9, 4))])
    with pytest.raises(ValueError, match="different signs"):
        blend_lib.blend([a, fake_oof(num_signs=5)])
    with pytest.raises(ValueError, match="one weight per source"):
        blend_lib.blend([a, a], [1.0])
    with pytest.raises(ValueError, match=">= 0"):
        blend_lib.blend([a, a], [1.0, -1.0])


def test_blend_cli_prints_the_table_next_to_the_original(tmp_path, capsys):
    a = write_oof(fake_oof(seed=1), tmp_path / "a" / "oof.parquet")
    b = write_oof(fake_oof(seed=1), tmp_path / "b.parquet")
    out = tmp_path / "blend.parquet"
    code = blend_cli.main([str(a.parent), str(b), "--weights", "1", "3", "--out", str(out),
                           "--json-out", str(tmp_path / "r.json")])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "len25 0.7402, len80 0.7395, blend 0.749" in printed
    report = json.loads((tmp_path / "r.json").read_text())
    assert [row["name"] for row in report["rows"]] == [str(a.parent), str(b), "blend"]
    assert report["weights"] == [0.25, 0.75]
    np.testing.assert_allclose(read_oof(out).probabilities, read_oof(a).probabilities, rtol=1e-6)
    assert blend_cli.main(["nope", "--runs-dir", str(tmp_path)]) == 2
    assert "no finished cross-validation of 'nope'" in capsys.readouterr().err



def test_cv_commands_report_user_errors_in_one_line(tmp_path, capsys):
    from tfislr.cli import train as train_cli

    assert cv_cli.main(["--config", "demo", "--data-dir", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tfislr-cv: error:") and "data folder not found" in err[0]
    assert train_cli.main(["--config", "demo", "--data-dir", str(tmp_path), "--cv",
                           "--set", "data.num_folds=1"]) == 2
    assert "num_folds" in capsys.readouterr().err
    with pytest.raises(SystemExit) as excinfo:  # a CV holds out every fold in turn
        train_cli.parse_args(["--config", "demo", "--data-dir", str(tmp_path), "--cv", "--fold", "1"])
    assert excinfo.value.code == 2

def _original_signers_data(tmp_path, participants):
    """A tiny data set whose signers are the competition's `participants` (original folds)."""
    from tfislr.data import synthetic

    data = synthetic.write_synthetic_dataset(tmp_path / "data", num_signs=2, seed=3,
                                             num_participants=len(participants),
                                             sequences_per_sign=len(participants))
    table = pd.read_csv(data / "train.csv")
    ids = dict(zip(sorted(table["participant_id"].unique()), participants))
    for old, new in ids.items():  # the folders too: ids and paths agree (no DataWarning)
        (data / "train_landmark_files" / str(old)).rename(data / "train_landmark_files" / str(new))
    table["path"] = [f"train_landmark_files/{ids[p]}/{s}.parquet"
                     for p, s in zip(table["participant_id"], table["sequence_id"])]
    table["participant_id"] = table["participant_id"].map(ids)
    table.to_csv(data / "train.csv", index=False)
    return data


def test_every_fold_is_checked_before_fold_0_trains(tmp_path, monkeypatch, capsys):
    """Signers of the original's folds 0, 1 and 3 only: fold 2 is skipped, said before any
    training; signers of one fold only: an error before anything is trained or created."""
    from tfislr.config import load_config
    from tfislr.errors import ConfigError
    from tfislr.training import run
    from tfislr.training.cross_validation import cross_validate

    trained = []

    class Stop(Exception):
        pass

    def fake_run(self):
        trained.append((self.request.fold, capsys.readouterr().out))
        raise Stop

    monkeypatch.setattr(run.TrainingRun, "run", fake_run)
    config = load_config("demo")
    data = _original_signers_data(tmp_path, [2044, 25571, 18796])
    with pytest.raises(Stop):
        cross_validate(config, data, output_dir=tmp_path / "runs")
    assert len(trained) == 1 and trained[0][0] == 0
    assert "fold 2/4: skipped: fold 2 has no clips in this data" in trained[0][1]
    assert "the CV is over folds 0, 1, 3" in trained[0][1]

    trained.clear()
    data = _original_signers_data(tmp_path / "one", [2044, 4718, 16069])
    with pytest.raises(ConfigError, match="needs two"):
        cross_validate(config, data, output_dir=tmp_path / "one" / "runs")
    assert not trained and not (tmp_path / "one" / "runs").exists()


@pytest.fixture
def tensorflow_messages():
    """The messages the `tensorflow` logger emits during the test (a list, filled live)."""
    import logging

    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect()
    logging.getLogger("tensorflow").addHandler(handler)
    yield messages
    logging.getLogger("tensorflow").removeHandler(handler)


def test_each_folds_prediction_traces_its_own_function_once(tensorflow_messages):
    """Five folds' models, each predicting a few batches (the last smaller): the model's
    logits, and no retracing warning (with Keras' `predict`, whose functions share one
    code object, TF warned at the fifth model)."""
    import keras
    import tensorflow as tf

    from tfislr.training.cross_validation import predict_logits

    inputs = np.random.default_rng(0).normal(size=(37, 4)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices(inputs).batch(16)  # a smaller last batch
    for fold in range(5):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        np.testing.assert_allclose(predict_logits(model, dataset),
                                   model(inputs, training=False), rtol=1e-6, atol=1e-6)
    assert not [m for m in tensorflow_messages if "retracing" in m], tensorflow_messages


# ------------------------------------------------------------------ a real CV (in-process)
# Tiny but complete (as in subprocess_runs.TINY): every part of the recipe runs.
TINY = [
    "data.global_batch_size=8", "train.batch_group_size=8", "model.dense_dim=16", "model.transfo_dim=32",
    "model.distill_dense_dim=16", "model.distill_transfo_dim=32", "model.num_heads=4",
    "train.soup_last_n=1", "data.num_folds=3",
]


@pytest.fixture(scope="module")
def cv_run(synthetic_data_dir, tmp_path_factory):
    """A 3-fold CV, one epoch a fold, with the stand-in classifier (fast)."""
    from tiny_models import build_tiny
    from tfislr.config import load_config
    from tfislr.training.cross_validation import cross_validate

    root = tmp_path_factory.mktemp("cv")
    config = load_config("demo", TINY + ["train.epochs=1", f"data.prepared_dir={root / 'prepared'}"])
    cv_dir = cross_validate(config, synthetic_data_dir, output_dir=root / "runs", verbose=0,
                            build_model=build_tiny)
    return config, cv_dir


@pytest.mark.extra_large
def test_each_folds_functions_trace_once_and_tf_sees_no_retracing(synthetic_data_dir, tmp_path,
                                                                   monkeypatch,
                                                                   tensorflow_messages):
    """Every fold has its own model, so its step functions trace once each (as in
    test_xla); TF must not count two folds' traces as retracing of one function, which it
    did when they were Keras' closures of one code object (here: 1 step an epoch, so the
    traces are close together among TF's last 10 calls)."""
    import collections

    from tiny_models import build_tiny
    from tfislr.config import load_config
    from tfislr.training import mean_teacher
    from tfislr.training.cross_validation import cross_validate

    traces = collections.Counter()  # (distiller, step, distilled mode) -> traces
    distiller_class = mean_teacher.MeanTeacherDistiller
    for name in ("train_step", "test_step"):
        def counted(self, *args, _step=getattr(distiller_class, name), _name=name, **kwargs):
            traces[(id(self), _name, kwargs.get("distilled_inference"))] += 1  # once per trace
            return _step(self, *args, **kwargs)
        monkeypatch.setattr(distiller_class, name, counted)
    config = load_config("demo", TINY + [
        "data.num_folds=2", "train.epochs=2", "data.global_batch_size=32",
        f"data.prepared_dir={tmp_path / 'prepared'}"])
    cross_validate(config, synthetic_data_dir, output_dir=tmp_path / "runs", verbose=0,
                   build_model=build_tiny)
    per_distiller = collections.defaultdict(dict)
    for (distiller, step, mode), count in traces.items():
        per_distiller[distiller][(step, mode)] = count
    # Two folds, each: the train step in both distilled modes and the test step, once.
    expected = {("train_step", False): 1, ("train_step", True): 1, ("test_step", None): 1}
    assert list(per_distiller.values()) == [expected, expected], traces
    assert not [m for m in tensorflow_messages if "retracing" in m], tensorflow_messages


@pytest.mark.large
def test_oof_covers_every_clip_once_with_the_runs_folds(cv_run, synthetic_data_dir):
    config, cv_dir = cv_run
    assert cv_dir.parent.name == "cv" and cv_dir.parent.parent.name == "demo"
    oof = read_oof(cv_dir / "oof.parquet")
    train_csv = pd.read_csv(synthetic_data_dir / "train.csv")
    assert sorted(oof.table["sequence_id"]) == sorted(train_csv["sequence_id"])
    assert not oof.table["sequence_id"].duplicated().any()
    np.testing.assert_allclose(oof.probabilities.sum(1), 1.0, rtol=1e-5)
    merged = oof.table.merge(train_csv, on=["sequence_id", "participant_id"])
    sign_map = json.loads((synthetic_data_dir / "sign_to_prediction_index_map.json").read_text())
    assert (merged["sign"].map(sign_map) == merged["label"]).all()
    report = json.loads((cv_dir / "report.json").read_text())
    for fold in range(3):
        run_info = json.loads((cv_dir / f"fold_{fold}" / "run.json").read_text())
        held_out = oof.table[oof.table["fold"] == fold]
        assert sorted(held_out["participant_id"].unique()) == run_info["val_participants"]
        assert len(held_out) == run_info["num_val"]
        # The prediction path (saved soup model, OOF) scores what training's validation scored.
        row = report["folds"][fold]
        assert row["accuracy"] == pytest.approx(row["run_soup_accuracy"], abs=1e-6)
    weighted = sum(r["clips"] * r["accuracy"] for r in report["folds"]) / report["clips"]
    assert report["accuracy"] == pytest.approx(weighted, abs=1e-12)
    assert report["clips"] == len(train_csv) and report["not_in_store"] == 0
    assert "CV" in (cv_dir / "report.txt").read_text()


@pytest.mark.extra_large
def test_a_finished_cv_is_not_rerun_and_configs_must_match(cv_run, synthetic_data_dir, tmp_path):
    from tfislr.config import load_config
    from tfislr.runs.cv_dir import latest_finished_cv, latest_unfinished_cv
    from tfislr.training.cross_validation import cross_validate

    config, cv_dir = cv_run
    with pytest.raises(ValueError, match="finished cross-validation"):
        cross_validate(config, synthetic_data_dir, cv_dir=cv_dir)
    assert latest_finished_cv(cv_dir.parents[2], "demo") == cv_dir
    assert latest_unfinished_cv(cv_dir.parents[2], "demo") is None
    other = tmp_path / "other"
    other.mkdir()
    (other / "cv.json").write_text((cv_dir / "cv.json").read_text())
    changed = load_config("demo", TINY + ["train.epochs=2", f"data.prepared_dir={config.data.prepared_dir}"])
    with pytest.raises(ValueError, match="another config"):
        cross_validate(changed, synthetic_data_dir, cv_dir=other)


@pytest.fixture(scope="module")
def cv_run_short(synthetic_data_dir, tmp_path_factory):
    """A second config of the same data (max_len 12): the other member of a blend."""
    from tiny_models import build_tiny
    from tfislr.config import load_config
    from tfislr.training.cross_validation import cross_validate

    root = tmp_path_factory.mktemp("cv_short")
    config = load_config("demo", TINY + ["name=short", "data.max_len=12", "train.epochs=1",
                                         f"data.prepared_dir={root / 'prepared'}"])
    return config, cross_validate(config, synthetic_data_dir, output_dir=root / "runs", verbose=0,
                                  build_model=build_tiny)


@pytest.mark.extra_large
def test_evaluate_on_the_exported_fold_agrees_with_the_oof_blend(cv_run, cv_run_short,
                                                                 synthetic_data_dir, tmp_path):
    """The exported ensemble of fold 0's models, scored by `evaluate` on fold 0, gives the OOF
    blend's fold-0 accuracy up to clips the export's rounding may flip.

    Export checks |TF - TFLite| <= PARITY_TOLERANCE[quantization] on every probability, so a
    clip whose blended top-1 leads the runner-up by more than twice that cannot change its
    prediction; only those near ties may, and the accuracies may differ by at most their
    share. fp32 makes that share small enough to pin every prediction of these barely trained
    models; fp16 (what ships, tolerance 1e-2) is held to the same rule.
    """
    import tiny_models  # noqa: F401  (registers the stand-in for load_model)
    from tfislr.evaluate import evaluate_tflite
    from tfislr.export import PARITY_TOLERANCE, export_ensemble

    (_, cv_long), (_, cv_short) = cv_run, cv_run_short
    fold = 0
    blended = blend_lib.blend([read_oof(cv_long / "oof.parquet"), read_oof(cv_short / "oof.parquet")])
    in_fold = (blended.table["fold"] == fold).to_numpy()
    fold_table = blended.table[in_fold]
    probabilities = blended.probabilities[in_fold]
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    ours = np.argmax(probabilities, axis=1)
    oof_accuracy = blended.scores()["folds"][fold]["accuracy"]
    members = [{"run": str(cv_long / "fold_0")}, {"run": str(cv_short / "fold_0")}]
    for quantization in ("fp32", "fp16"):
        path = tmp_path / f"fold0_{quantization}.tflite"
        export_ensemble(members, path, quantization, parity_clips=synthetic_data_dir, verbose=False,
                        latency_repeats=1)
        # The split travels with the models: evaluate takes fold 0's signers from the export.
        report = evaluate_tflite(path, synthetic_data_dir, fold=fold)
        assert sorted(report["sequence_ids"]) == sorted(fold_table["sequence_id"])
        by_id = dict(zip(report["sequence_ids"], report["predictions"]))
        exported = np.array([by_id[s] for s in fold_table["sequence_id"]])
        near_tie = (top2[:, 1] - top2[:, 0]) <= 2 * PARITY_TOLERANCE[quantization]
        np.testing.assert_array_equal(exported[~near_tie], ours[~near_tie], err_msg=quantization)
        assert abs(report["accuracy"] - oof_accuracy) <= near_tie.mean() + 1e-9, quantization
        if quantization == "fp32":
            assert near_tie.mean() <= 0.1, "too many near ties for the comparison to mean much"


def _cv_command(data_dir, cv_dir, *extra):
    overrides = TINY + ["data.num_folds=2", f"data.prepared_dir={cv_dir.parents[3] / 'prepared'}"]
    return [sys.executable, str(REPO / "train.py"), "--config", "demo", "--data-dir", str(data_dir),
            "--cv", "--epochs", "2", "--verbose", "2", *sum((["--set", s] for s in overrides), []),
            *extra]


@pytest.mark.extra_large
def test_a_killed_cv_resumes_between_and_inside_folds(synthetic_data_dir, tmp_path):
    cv_dir = tmp_path / "runs" / "demo" / "cv" / "20260101-000000"
    fold0, fold1 = cv_dir / "fold_0", cv_dir / "fold_1"
    # 1. Killed once fold 0 is finished (between folds: fold 0's predictions or fold 1's start).
    run_until_killed(_cv_command(synthetic_data_dir, cv_dir, "--run-dir", cv_dir),
               lambda: (fold0 / "finished.json").exists())
    finished = [((fold0 / name).read_bytes(), (fold0 / name).stat().st_mtime_ns)
                for name in ("finished.json", "metrics.json")]
    assert not (fold1 / "finished.json").exists()
    # 2. Resumed as a user would (--resume finds the CV), killed inside fold 1 after its first epoch.
    resume = _cv_command(synthetic_data_dir, cv_dir, "--resume", "--output", tmp_path / "runs")
    output = run_until_killed(resume, lambda: backed_up_epoch(fold1) is not None)
    assert "fold 0/2: finished before, not retrained" in output
    assert not (fold1 / "finished.json").exists() and not (cv_dir / "report.json").exists()
    # 3. Resumed again: fold 1 continues from its last epoch, fold 0 is never retrained.
    result = subprocess.run(resume, cwd=REPO, env=env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"resuming {cv_dir}" in result.stderr
    assert [((fold0 / name).read_bytes(), (fold0 / name).stat().st_mtime_ns)
            for name in ("finished.json", "metrics.json")] == finished
    assert pd.read_csv(fold1 / "history.csv")["epoch"].tolist() == [1, 2]  # epoch 1 not redone
    oof = read_oof(cv_dir / "oof.parquet")
    assert sorted(oof.table["sequence_id"]) == sorted(pd.read_csv(synthetic_data_dir / "train.csv")["sequence_id"])
    assert set(oof.table["fold"]) == {0, 1}
    assert json.loads((cv_dir / "report.json").read_text())["clips"] == len(oof)
