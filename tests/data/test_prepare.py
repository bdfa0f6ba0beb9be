"""Prepare step: store content, bad files, summary, resume, idempotence, CLI, real sample.

The store module itself (folder, summary, load checks) is tested in test_store.py.
"""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tfislr.cli import prepare as prepare_cli
from tfislr.data import kaggle, prepare, store, synthetic
from tfislr.preprocessing import preprocess_numpy
from subprocess_runs import env, run_until_killed


def _tiny(tmp_path, name="data", **sizes):
    sizes = {"num_signs": 3, "num_participants": 2, "sequences_per_sign": 4, "seed": 7, **sizes}
    return synthetic.write_synthetic_dataset(tmp_path / name, **sizes)


def _prepare(data_dir, out, max_len=25, **kwargs):
    kwargs.setdefault("num_workers", 1)
    kwargs.setdefault("progress", False)
    return prepare.prepare_store(data_dir, max_len, out, **kwargs)


def _same_store(a, b):
    a, b = store.load_store(a), store.load_store(b)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    np.testing.assert_array_equal(a.row_splits, b.row_splits)
    pd.testing.assert_frame_equal(a.manifest, b.manifest)
    assert a.signs == b.signs


def test_store_holds_preprocess_output(synthetic_data_dir, synthetic_store):
    table = kaggle.read_train_csv(synthetic_data_dir)
    s = synthetic_store
    assert len(s) == len(table) and s.max_len == 25
    assert list(s.manifest.columns) == list(store.MANIFEST_COLUMNS)
    assert s.manifest["sequence_id"].tolist() == table["sequence_id"].tolist()  # train.csv order
    assert s.landmarks.dtype == np.float32 and s.landmarks.shape[1:] == (100, 3)
    assert s.row_splits.dtype == np.int64 and s.row_splits[-1] == len(s.landmarks)
    assert np.isfinite(np.asarray(s.landmarks)).all()
    sign_map = kaggle.read_sign_map(synthetic_data_dir)
    assert [sign_map[name] for name in s.signs] == list(range(len(s.signs)))
    np.testing.assert_array_equal(s.labels, table["label"].to_numpy(np.int32))
    for i in (0, 5, len(s) - 1):
        frames = kaggle.read_landmark_file(synthetic_data_dir / s.manifest["path"][i])
        np.testing.assert_array_equal(s.sequence(i), preprocess_numpy(frames, 25))
        assert s.manifest["n_raw_frames"][i] == len(frames)
        assert s.manifest["n_frames"][i] == len(s.sequence(i)) <= 25
    assert (s.lengths >= 1).all()
    # A clip without hands is stored as one zero frame (Preprocess's rule).
    handless = np.flatnonzero(s.manifest["n_hand_frames"].to_numpy() == 0)
    for i in handless:
        assert s.lengths[i] == 1 and not s.sequence(i).any()
    summary = s.summary
    assert summary["prepared"] == len(s) and summary["skipped"] == 0
    assert summary["sequences_without_hands"] == len(handless)
    assert "PreparedStore(" in repr(s)
    with pytest.raises(IndexError):
        s.sequence(len(s))


def test_bad_files_are_skipped_and_reported(tmp_path):
    data = _tiny(tmp_path)
    table = pd.read_csv(data / "train.csv")
    (data / table["path"][0]).write_bytes(b"not parquet at all")
    (data / table["path"][3]).unlink()
    frames = kaggle.read_landmark_file(data / table["path"][5])
    broken = synthetic.frames_to_table(frames).drop_columns(["z"])
    import pyarrow.parquet as pq

    pq.write_table(broken, data / table["path"][5])
    path = _prepare(data, tmp_path / "prepared")
    s = store.load_store(path)
    assert len(s) == len(table) - 3
    assert set(s.manifest["sequence_id"]) == set(table["sequence_id"]) - set(table["sequence_id"][[0, 3, 5]])
    skipped = pd.read_csv(path / "skipped.csv")
    assert list(skipped.columns) == list(store.SKIPPED_COLUMNS)
    assert skipped["sequence_id"].tolist() == table["sequence_id"][[0, 3, 5]].tolist()
    assert skipped["kind"].tolist() == ["unreadable", "missing file", "schema"]
    assert "missing column(s) z" in skipped["reason"][2]
    summary = json.loads((path / "summary.json").read_text())
    assert summary["skipped"] == 3 and summary["prepared"] == len(table) - 3
    assert summary["skipped_by_kind"] == {"unreadable": 1, "missing file": 1, "schema": 1}
    text = prepare.format_summary(summary)
    assert "skipped 3" in text and "unreadable: 1" in text and "skipped.csv" in text


def test_fixed_files_are_noticed_and_a_reused_store_is_announced(tmp_path, capsys):
    """Replacing (or restoring) listed landmark files rebuilds the store, though train.csv
    and the sign map are unchanged; a store reused as it is says so on stderr."""
    data = _tiny(tmp_path)
    table = pd.read_csv(data / "train.csv")
    good = [(data / table["path"][k]).read_bytes() for k in (0, 3)]
    (data / table["path"][0]).write_bytes(b"not parquet at all")
    (data / table["path"][3]).unlink()
    path = prepare.ensure_store(data, 25, tmp_path / "p", num_workers=1)
    assert store.read_summary(path)["skipped"] == 2
    assert prepare.ensure_store(data, 25, tmp_path / "p", num_workers=1) == path
    assert f"reusing the prepared store {path}" in capsys.readouterr().err
    for k, content in zip((0, 3), good):
        (data / table["path"][k]).write_bytes(content)
    prepare.ensure_store(data, 25, tmp_path / "p", num_workers=1)
    assert "reusing" not in capsys.readouterr().err
    assert store.read_summary(path)["skipped"] == 0 and len(store.load_store(path)) == len(table)


def test_a_store_forced_by_several_processes_at_once_is_rebuilt_once(tmp_path, monkeypatch):
    """The workers of a multi-worker run all force the store (`--force-prepare`): one that
    waited on the lock while another rebuilt it takes that fresh store instead of deleting
    it under the process reading it. Forced alone, a store matching the data is rebuilt."""
    import contextlib

    data = _tiny(tmp_path)
    path = _prepare(data, tmp_path / "p")
    builds, others = [], []
    run_tasks, lock = prepare._run_tasks, prepare._lock
    monkeypatch.setattr(prepare, "_run_tasks", lambda *a: builds.append(a) or run_tasks(*a))

    @contextlib.contextmanager
    def taken_first(lock_path):  # another process holds the lock and forces a rebuild
        if not others:
            others.append(lock_path)
            _prepare(data, tmp_path / "p", force=True)
        with lock(lock_path):
            yield

    monkeypatch.setattr(prepare, "_lock", taken_first)
    first = prepare.build_stamp(path)
    assert _prepare(data, tmp_path / "p", force=True) == path
    assert len(builds) == 1 and prepare.build_stamp(path) != first
    rebuilt = prepare.build_stamp(path)
    _prepare(data, tmp_path / "p", force=True)
    assert len(builds) == 2 and prepare.build_stamp(path) != rebuilt


def test_resume_after_interruption_gives_the_same_store(tmp_path, monkeypatch):
    data = _tiny(tmp_path)
    clean = _prepare(data, tmp_path / "clean", shard_size=2)

    calls = []
    original = prepare._run_shard

    def interrupted(task):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the 4th shard
        calls.append(task[2])
        return original(task)

    monkeypatch.setattr(prepare, "_run_shard", interrupted)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        _prepare(data, out, shard_size=2)
    partial = out / "max_len_25.partial"
    assert len(list(partial.glob("shard_*.npz"))) == 3
    assert not (out / "max_len_25").exists()
    # A write cut short by a kill leaves a temp file; it must not confuse the next run.
    (partial / ".tmp.999.shard_000005.npz").write_bytes(b"half")

    monkeypatch.setattr(prepare, "_run_shard", lambda task: calls.append(task[2]) or original(task))
    path = _prepare(data, out, shard_size=2)
    assert sorted(calls[3:]) == [3, 4, 5]  # only the missing shards were done
    assert store.read_summary(path)["resumed_sequences"] == 6
    assert not partial.exists()
    _same_store(clean, path)


def test_shards_of_another_data_set_are_discarded(tmp_path, monkeypatch):
    data = _tiny(tmp_path)
    original = prepare._run_shard
    calls = []

    def stop_after_one(task):
        if calls:
            raise KeyboardInterrupt
        calls.append(task)
        return original(task)

    monkeypatch.setattr(prepare, "_run_shard", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        _prepare(data, tmp_path / "p", shard_size=4)
    monkeypatch.setattr(prepare, "_run_shard", original)
    table = pd.read_csv(data / "train.csv")
    table.iloc[::-1].to_csv(data / "train.csv", index=False)  # a different data set
    path = _prepare(data, tmp_path / "p", shard_size=4)
    assert store.read_summary(path)["resumed_sequences"] == 0
    s = store.load_store(path)
    assert s.manifest["sequence_id"].tolist() == table["sequence_id"][::-1].tolist()


def test_idempotent_and_detects_a_changed_data_set(tmp_path, monkeypatch):
    data = _tiny(tmp_path)
    path = _prepare(data, tmp_path / "p")
    stamp = (path / "landmarks.npy").stat().st_mtime_ns

    def must_not_run(task):
        raise AssertionError("a complete store was prepared again")

    monkeypatch.setattr(prepare, "_run_shard", must_not_run)
    assert _prepare(data, tmp_path / "p") == path
    assert prepare.ensure_store(data, 25, tmp_path / "p", progress=False) == path
    assert (path / "landmarks.npy").stat().st_mtime_ns == stamp
    monkeypatch.undo()

    table = pd.read_csv(data / "train.csv")
    table.iloc[:-2].to_csv(data / "train.csv", index=False)
    assert prepare.ensure_store(data, 25, tmp_path / "p", num_workers=1, progress=False) == path
    assert len(store.load_store(path)) == len(table) - 2
    # force rebuilds a complete, up-to-date store.
    before = (path / "summary.json").stat().st_mtime_ns
    _prepare(data, tmp_path / "p", force=True)
    assert (path / "summary.json").stat().st_mtime_ns != before


def test_fingerprint_depends_on_max_len_and_train_csv(tmp_path):
    data = _tiny(tmp_path)
    a = prepare.data_fingerprint(data, 25)
    assert a == prepare.data_fingerprint(data, 25)
    assert a != prepare.data_fingerprint(data, 80)
    with open(data / "train.csv", "a") as handle:
        handle.write("\n")
    assert a != prepare.data_fingerprint(data, 25)


def test_argument_and_location_errors(tmp_path):
    data = _tiny(tmp_path)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_len"):
            prepare.prepare_store(data, bad, tmp_path / "p")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="sub: cannot write here \\(Not a directory: .*file\\); "
                                         "pass another prepared-store folder"):
        prepare.prepare_store(data, 25, blocker / "sub", num_workers=1, progress=False)
    # A bad train.csv is an error, not a skipped file.
    table = pd.read_csv(data / "train.csv")
    table.loc[0, "sign"] = "nope"
    table.to_csv(data / "train.csv", index=False)
    with pytest.raises(ValueError, match="train.csv line 2"):
        _prepare(data, tmp_path / "p")


def test_empty_and_handless_files_are_kept(tmp_path):
    data = _tiny(tmp_path)
    table = pd.read_csv(data / "train.csv")
    synthetic.write_landmark_file(data / table["path"][0], np.zeros((0, 543, 3)))
    frames = np.full((4, 543, 3), 0.5)
    frames[:, 468:489] = np.nan
    frames[:, 522:543] = np.nan
    synthetic.write_landmark_file(data / table["path"][1], frames)
    s = store.load_store(_prepare(data, tmp_path / "p"))
    assert len(s) == len(table)
    for i, raw in ((0, 0), (1, 4)):
        assert s.manifest["n_raw_frames"][i] == raw and s.manifest["n_hand_frames"][i] == 0
        assert s.sequence(i).shape == (1, 100, 3) and not s.sequence(i).any()


def test_cli(tmp_path, capsys):
    data = _tiny(tmp_path)
    prepare_cli.main(["--data-dir", str(data), "--max-len", "8", "12", "--out", str(tmp_path / "p"),
                  "--workers", "1", "--quiet"])
    out = capsys.readouterr().out
    assert "max_len 8: prepared 12 of 12" in out and "max_len 12: prepared 12 of 12" in out
    assert store.load_store(tmp_path / "p" / "max_len_8").lengths.max() <= 8
    assert prepare_cli.main(["--data-dir", str(tmp_path / "missing"), "--max-len", "8", "--quiet"]) == 2


def test_prepare_accepts_exactly_the_max_lens_a_config_accepts(tmp_path, capsys):
    """A store no config can train on is refused up front (`--max-len 1` built one)."""
    from tfislr.config import load_config

    data = _tiny(tmp_path)
    for max_len in range(-1, 5):
        try:
            load_config("demo", [f"data.max_len={max_len}"])
            config_accepts = True
        except ValueError:
            config_accepts = False
        out = tmp_path / f"p{max_len}"
        argv = ["--data-dir", str(data), "--max-len", str(max_len), "--out", str(out),
                "--workers", "1", "--quiet"]
        if config_accepts:
            assert prepare_cli.main(argv) in (0, None) and (out / f"max_len_{max_len}").is_dir()
            continue
        with pytest.raises(SystemExit) as exit_info:
            prepare_cli.main(argv)
        assert exit_info.value.code == 2 and not out.exists()
        assert "--max-len: expected an int >= 2 (the smallest data.max_len" in capsys.readouterr().err
        with pytest.raises(ValueError, match="max_len must be an int >= 2"):
            _prepare(data, out, max_len=max_len)


@pytest.mark.parametrize("quiet", [True, False])
def test_a_reused_store_says_so_and_what_it_skipped(tmp_path, capsys, quiet):
    """The CLI's summary of a store it reuses says "reused", quiet or not; the reuse line
    (CLI, train and CV) names the clips the store skipped and where they are listed."""
    data = _tiny(tmp_path)
    table = pd.read_csv(data / "train.csv")
    (data / table["path"][0]).write_bytes(b"not parquet at all")
    argv = ["--data-dir", str(data), "--max-len", "8", "--out", str(tmp_path / "p"),
            "--workers", "1", *(["--quiet"] if quiet else [])]
    prepare_cli.main(argv)
    first = capsys.readouterr()
    assert "max_len 8: prepared 11 of 12" in first.out and "reus" not in (first.out + first.err).replace(str(tmp_path), "")
    path = tmp_path / "p" / "max_len_8"
    stamp = prepare.build_stamp(path)
    prepare_cli.main(argv)
    again = capsys.readouterr()
    assert prepare.build_stamp(path) == stamp  # reused indeed
    assert "max_len 8: reused the store prepared before, 11 of 12 sequences" in again.out
    assert "skipped 1 (unreadable: 1; see skipped.csv)" in again.out
    lacks = f"it lacks the 1 clip skipped when it was prepared (listed in {path / 'skipped.csv'})"
    assert (lacks in again.err) != quiet
    prepare.ensure_store(data, 8, tmp_path / "p")  # what train and CV call
    err = capsys.readouterr().err
    assert f"reusing the prepared store {path}" in err and lacks in err


@pytest.mark.parametrize("content,problem", [("", "empty file"), ("\n\n", "empty file")])
def test_an_empty_train_csv_is_named_before_any_work(tmp_path, capsys, content, problem):
    data = _tiny(tmp_path)
    (data / "train.csv").write_text(content)
    out = tmp_path / "p"
    assert prepare_cli.main(["--data-dir", str(data), "--max-len", "8", "--out", str(out),
                         "--workers", "1", "--quiet"]) == 2
    assert f"tfislr-prepare: error: {data / 'train.csv'}: {problem}" in capsys.readouterr().err
    assert not out.exists()  # nothing prepared


def test_a_header_only_train_csv_lists_no_clips(tmp_path, capsys):
    data = _tiny(tmp_path)
    (data / "train.csv").write_text("path,participant_id,sequence_id,sign\n")
    out = tmp_path / "p"
    assert prepare_cli.main(["--data-dir", str(data), "--max-len", "8", "--out", str(out),
                         "--workers", "1", "--quiet"]) == 2
    assert f"tfislr-prepare: error: {data / 'train.csv'} lists no clips" in capsys.readouterr().err
    assert not out.exists()


def test_real_sample(real_data_dir, tmp_path):
    path = _prepare(real_data_dir, tmp_path / "real", max_len=25)
    s = store.load_store(path)
    summary = s.summary
    assert summary["prepared"] == 120 and summary["skipped"] == 0
    assert set(s.signs[label] for label in s.labels) == {"hello", "thankyou"}
    assert len(s.signs) == 250
    assert s.manifest["n_raw_frames"].sum() == 2080
    for i in (0, 60, 119):
        frames = kaggle.read_landmark_file(real_data_dir / s.manifest["path"][i])
        np.testing.assert_array_equal(s.sequence(i), preprocess_numpy(frames, 25))


@pytest.mark.extra_large
def test_worker_processes_give_the_same_store(tmp_path):
    data = _tiny(tmp_path, sequences_per_sign=10)
    one = _prepare(data, tmp_path / "one", shard_size=5)
    two = _prepare(data, tmp_path / "two", shard_size=5, num_workers=2)
    _same_store(one, two)
    assert store.read_summary(two)["num_workers"] == 2


@pytest.mark.large
def test_killed_run_resumes(tmp_path):
    """SIGKILL the CLI mid-run, run it again: the result equals an uninterrupted run."""
    data = _tiny(tmp_path, num_signs=6, sequences_per_sign=20)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "tfislr.data.prepare", "--data-dir", str(data),
               "--max-len", "25", "--out", str(out), "--workers", "1", "--shard-size", "3",
               "--quiet"]
    partial = out / "max_len_25.partial"
    run_until_killed(command, lambda: len(list(partial.glob("shard_*.npz"))) >= 5, timeout=120,
                     poll_seconds=0.02)
    done = len(list(partial.glob("shard_*.npz")))
    assert 5 <= done < 40, done
    subprocess.run(command, env=env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert store.read_summary(out / "max_len_25")["resumed_sequences"] >= 15
    _same_store(out / "max_len_25", _prepare(data, tmp_path / "clean"))
