"""The train command (train.py, tfislr.cli.train): errors that name the option or file, checks
before the store is prepared, a NaN stop as a user error, --force-prepare."""

import importlib.util
import pathlib

import pytest

from tfislr.cli import cv as cv_cli
from tfislr.config import load_config
from tfislr.training.callbacks import NonFiniteLossError

REPO = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("train_cli", REPO / "train.py")
train_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_cli)


# ----------------------------------------------------------------------------- CLI errors
def test_cli_reports_a_bad_config_cleanly(capsys, tmp_path):
    assert train_cli.main(["--config", "nope", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no config 'nope'" in err and "len80" in err
    assert train_cli.main(["--config", "demo", "--data-dir", str(tmp_path), "--set", "train.epochz=3"]) == 2
    assert "epochz" in capsys.readouterr().err


def test_cli_names_the_bad_set_option_or_the_ensemble_file(capsys, tmp_path):
    from tfislr.config import CONFIGS_DIR

    def error_line():
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    assert train_cli.main(["--config", "demo", "--data-dir", str(tmp_path), "--set", "train.seed=1",
                           "--set", "train.epochs=many"]) == 2
    assert error_line().startswith("tfislr-train: error: --set train.epochs=many (on demo.yaml): "
                                   "config key 'train.epochs' expects an integer")
    for ensemble in ("ensemble", str(CONFIGS_DIR / "demo_ensemble.yaml")):
        assert train_cli.main(["--config", ensemble, "--data-dir", str(tmp_path)]) == 2
        line = error_line()
        assert line.startswith("tfislr-train: error: ") and "ensemble.yaml: an ensemble file" in line
        assert line.endswith("training configs: demo, len25, len80")
    # --epochs N replaces train.epochs, but a bad --set value is still refused (tester8 #1).
    for argv in (["--set", "train.epochs=abc", "--epochs", "1"],
                 ["--epochs", "1", "--set", "train.epochs=abc"]):
        assert train_cli.main(["--config", "demo", "--data-dir", str(tmp_path), *argv]) == 2
        assert error_line().startswith("tfislr-train: error: --set train.epochs=abc (on demo.yaml): "
                                       "config key 'train.epochs' expects an integer")
    with pytest.raises(SystemExit) as excinfo:  # --epochs is checked as the option it is
        train_cli.parse_args(["--config", "demo", "--data-dir", str(tmp_path), "--epochs", "0"])
    assert excinfo.value.code == 2
    assert "--epochs: expected a positive integer, got '0'" in capsys.readouterr().err


def test_cli_rejects_fold_and_full_together(tmp_path):
    with pytest.raises(SystemExit) as excinfo:
        train_cli.parse_args(["--config", "demo", "--data-dir", str(tmp_path), "--fold", "1", "--full"])
    assert excinfo.value.code == 2


def test_cli_needs_a_kaggle_layout(capsys, tmp_path):
    assert train_cli.main(["--config", "demo", "--data-dir", str(tmp_path / "missing")]) == 2
    assert "data folder not found (expected the Kaggle layout)" in capsys.readouterr().err


def test_settings_errors_come_before_the_store_is_prepared(synthetic_data_dir, tmp_path,
                                                           monkeypatch, capsys):
    """A bad batch split or fold needs no data: train, CV and the CLI (also with
    --force-prepare) refuse it before a store, run dir or CV dir exists (on the full data
    preparing takes tens of minutes)."""
    import types

    from tfislr.data import prepare
    from tfislr.training import cross_validation, run, strategy

    three_replicas = types.SimpleNamespace(num_replicas_in_sync=3)  # as cpu:3 would give
    real_get_strategy = strategy.get_strategy

    def get_strategy(name):  # cpu:N must split the devices at process start: a stand-in
        return three_replicas if name in (three_replicas, "cpu:3") else real_get_strategy(name)

    monkeypatch.setattr(prepare, "default_num_workers", lambda: 1)  # (the old code prepared)
    prepared, output = tmp_path / "p", tmp_path / "runs"
    demo = ["train.batch_group_size=16", f"data.prepared_dir={prepared}"]
    config = load_config("demo", demo)
    cases = [
        (lambda: run.train(config, synthetic_data_dir, output, strategy=three_replicas),
         "data.global_batch_size (32) does not divide by the 3 replicas"),
        (lambda: run.train(config, synthetic_data_dir, output, fold=4),
         "fold must be an int in [0, 4), got 4"),
        (lambda: cross_validation.cross_validate(config, synthetic_data_dir, output,
                                                 strategy=three_replicas),
         "does not divide by the 3 replicas"),
    ]
    for call, message in cases:
        with monkeypatch.context() as patch:
            patch.setattr(strategy, "get_strategy", get_strategy)  # what RunRequest uses
            with pytest.raises(ValueError) as error:
                call()
        assert message in str(error.value)
        assert not prepared.exists() and not output.exists()
    argv = ["--config", "demo", "--data-dir", str(synthetic_data_dir), "--output", str(output),
            "--force-prepare", *sum((["--set", s] for s in demo), [])]
    for extra, name, message in [([], "cpu:3", "does not divide by the 3 replicas"),
                                 (["--cv"], "cpu:3", "does not divide by the 3 replicas"),
                                 (["--fold", "4"], "default", "--fold must be an int in [0, 4)")]:
        with monkeypatch.context() as patch:
            patch.setattr(strategy, "get_strategy", get_strategy)
            assert train_cli.main([*argv, *extra, "--strategy", name]) == 2
        assert message in capsys.readouterr().err
        assert not prepared.exists() and not output.exists()


def test_strategy_is_runtime_strategy_given_once(synthetic_data_dir, tmp_path, monkeypatch,
                                                capsys):
    """`--strategy NAME` is short for `--set runtime.strategy=NAME`: the request builds the
    config's strategy, either spelling works, and two that disagree are one clear error."""
    import types

    from tfislr.training import strategy

    built = []

    def get_strategy(name):  # records the name; 3 replicas fail the batch split, before data
        built.append(name)
        return types.SimpleNamespace(num_replicas_in_sync=3)

    monkeypatch.setattr(strategy, "get_strategy", get_strategy)
    argv = ["--config", "demo", "--data-dir", str(synthetic_data_dir),
            "--output", str(tmp_path / "runs")]
    for extra, name in [(["--strategy", "cpu:3"], "cpu:3"),
                        (["--set", "runtime.strategy=cpu:3"], "cpu:3"),
                        (["--set", "runtime.strategy=Multi-Worker", "--strategy", "multi_worker"],
                         "multi_worker"),
                        ([], "default")]:
        built.clear()
        assert train_cli.main([*argv, *extra]) == 2
        assert built == [name], extra
        assert "does not divide by the 3 replicas" in capsys.readouterr().err
    built.clear()
    for extra, message in [
        (["--strategy", "mirrored", "--set", "runtime.strategy=cpu:3"],
         "tfislr-train: error: --strategy mirrored contradicts --set runtime.strategy=cpu:3; "
         "give the strategy once"),
        (["--strategy", "warp"], "tfislr-train: error: --strategy: unknown strategy 'warp'; "
                                 "expected one of default, mirrored, multi_worker, tpu"),
        (["--set", "runtime.strategy=cpu:0"],
         "tfislr-train: error: --set runtime.strategy=cpu:0 (on demo.yaml): runtime.strategy: "
         "strategy 'cpu:0': the device count must be >= 1"),
    ]:
        assert train_cli.main([*argv, *extra]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), lines
    assert built == [] and not (tmp_path / "runs").exists()
    assert cv_cli.main([*argv, "--strategy", "tpu", "--set", "runtime.strategy=cpu:2"]) == 2
    assert "--strategy tpu contradicts --set runtime.strategy=cpu:2" in capsys.readouterr().err


def test_cli_turns_a_nan_stop_into_a_user_error(monkeypatch, capsys, tmp_path,
                                                synthetic_data_dir):
    import tfislr.training.run as run

    def explode(*args, **kwargs):
        raise NonFiniteLossError("training loss is not finite at epoch 2, step 3")

    monkeypatch.setattr(run.TrainingRun, "run", explode)
    # The error contract (tfislr/errors.py): a clean stop the config can fix is exit code 2.
    assert train_cli.main(["--config", "demo", "--data-dir", str(synthetic_data_dir),
                           "--output", str(tmp_path / "runs")]) == 2
    assert "epoch 2, step 3" in capsys.readouterr().err


def test_force_prepare_rebuilds_the_store_and_the_default_reuses_it(tmp_path, monkeypatch, capsys):
    """`--force-prepare` (tfislr-train and tfislr-cv) rebuilds a store that matches the data,
    as `tfislr-prepare --force` does; without it the store is left for the run to reuse."""
    from tfislr.cli import train as cli
    from tfislr.cli.run_options import run_request
    from tfislr.data import prepare, synthetic

    data = synthetic.write_synthetic_dataset(tmp_path / "data", num_signs=3, num_participants=2,
                                             sequences_per_sign=4, seed=7)
    max_len = load_config("demo").data.max_len
    path = prepare.ensure_store(data, max_len, tmp_path / "p", num_workers=1, progress=False)
    monkeypatch.setattr(prepare, "default_num_workers", lambda: 1)  # no worker start-up
    argv = ["--config", "demo", "--data-dir", str(data),
            "--set", f"data.prepared_dir={tmp_path / 'p'}"]
    built = prepare.build_stamp(path)
    run_request(cli.parse_args(argv), "tfislr-train")
    assert prepare.ensure_store(data, max_len, tmp_path / "p") == path  # what the run calls
    assert prepare.build_stamp(path) == built
    assert f"reusing the prepared store {path}" in capsys.readouterr().err
    for parse_args in (cli.parse_args, cv_cli.parse_args):
        run_request(parse_args([*argv, "--force-prepare"]), "tfislr-train")
        assert prepare.build_stamp(path) != built
        built = prepare.build_stamp(path)
        err = capsys.readouterr().err
        assert "reusing" not in err and "prepared 12 of 12 sequences" in err, err
