"""tfislr as a package: the lazy public API, the shipped configs, and a wheel that works when
installed outside the checkout."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import tfislr

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_public_api_names_resolve():
    for name in tfislr.__all__:
        assert getattr(tfislr, name) is not None, name
    assert set(tfislr.__all__) <= set(dir(tfislr))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tfislr.nope  # noqa: B018


def test_public_predict_is_the_function_whichever_import_came_first():
    import tfislr.predict as module

    assert tfislr.predict is module and callable(tfislr.predict)
    calls = []
    original = module.predict
    module.predict = lambda *args, **kwargs: calls.append((args, kwargs)) or "result"
    try:
        assert tfislr.predict("m.tflite", ["a.parquet"], top_k=3) == "result"
    finally:
        module.predict = original
    assert calls == [(("m.tflite", ["a.parquet"]), {"top_k": 3})]


def test_import_tfislr_loads_no_tensorflow():
    code = ("import sys, tfislr; tfislr.load_config('len80'); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_shipped_configs_by_name_and_by_their_old_path():
    from tfislr.config import CONFIGS_DIR, load_config, resolve_config_path

    assert CONFIGS_DIR == REPO / "tfislr" / "configs" and (CONFIGS_DIR / "len80.yaml").is_file()
    assert resolve_config_path("len80") == CONFIGS_DIR / "len80.yaml"
    # `configs/len80.yaml`, as in a checkout before the configs moved into the package.
    assert load_config("configs/len80.yaml") == load_config("len80")
    assert not (REPO / "configs").exists()


@pytest.mark.large
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    """`pip wheel` → install into a folder of its own → from another folder, `tfislr-model
    --config len80` prints the original's parameter counts and `tfislr-train --help` answers.

    The wheel's dependencies are those of this environment (`--no-deps`): what is tested is
    that the package, its configs and its console scripts install, not the resolver."""
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Built from a copy of what the sdist holds: setuptools writes build/ next to the source.
    source = tmp_path / "source"
    shutil.copytree(REPO / "tfislr", source / "tfislr",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # No build isolation: the build backend (setuptools) comes from this environment, which
    # needs no package index.
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(source)], check=True, cwd=tmp_path, timeout=300)
    (wheel,) = wheels.glob("tfislr-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, cwd=tmp_path, timeout=300)
    assert (site / "tfislr" / "configs" / "len80.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(site)}

    def run(*argv):
        return subprocess.run(argv, capture_output=True, text=True, cwd=elsewhere, env=env,
                              timeout=600)

    where = run(sys.executable, "-c", "import tfislr; print(tfislr.__file__)")
    assert where.stdout.strip() == str(site / "tfislr" / "__init__.py"), where.stderr
    model = run(str(site / "bin" / "tfislr-model"), "--config", "len80", "--no-summary")
    assert model.returncode == 0, model.stderr[-2000:]
    assert "13,688,418" in model.stdout and "6,943,394" in model.stdout, model.stdout
    helped = run(str(site / "bin" / "tfislr-train"), "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: tfislr-train"), helped.stderr
    assert "len80" in helped.stdout  # the shipped configs, listed from the installed package


def test_no_source_file_of_the_package_is_hidden_by_gitignore():
    """A pattern meant for the run folder (`runs/`) once matched `tfislr/runs/` too: the
    package worked in the checkout that wrote it and lacked three modules in every clone."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    files = [str(path.relative_to(REPO)) for path in (REPO / "tfislr").rglob("*")
             if path.is_file() and "__pycache__" not in path.parts]
    # --no-index: match the patterns also for files git already tracks (a clone made before
    # a file was ignored still has it; every later clone does not).
    matched = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO,
                             input="\n".join(files), capture_output=True, text=True).stdout
    assert not matched.split(), f"ignored by .gitignore, so missing from clones: {matched.split()}"


def test_counts_agree_in_number():
    """A count users read takes `tfislr.text.plural` ("1 checkpoint", "2 checkpoints"), never a
    fixed "(s)" or plural after a counted value (`{len(x)} clip(s)`, `{n} checkpoints`)."""
    import re

    from tfislr.text import plural

    assert [plural(n, "checkpoint") for n in (0, 1, 2)] == ["0 checkpoints", "1 checkpoint",
                                                            "2 checkpoints"]
    assert plural(1024, "clip") == "1,024 clips" and plural(2, "index", "indices") == "2 indices"
    fixed = re.compile(r"\{(len\([^}]*\)|[a-z_.\[\]'\"]*(count|frames|num_\w+|total)[^}]*)\}"
                       r" (\w+\(s\)|checkpoints|clips|frames|signs|sequences|steps|epochs)\b")
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for path in sorted((REPO / "tfislr").rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if fixed.search(line) or re.search(r"\}[^{}\"]{0,3}\w+\(s\)", line)]
    assert not found, "\n".join(found)
