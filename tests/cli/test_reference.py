"""docs/cli.md is the commands' `--help` as their parsers print it today (scripts/cli_reference.py)."""

import importlib.util
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("cli_reference", REPO / "scripts" / "cli_reference.py")
cli_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli_reference)


def test_the_committed_cli_reference_is_current():
    committed = (REPO / "docs" / "cli.md").read_text()
    assert committed == cli_reference.render(), (
        f"docs/cli.md differs from the commands' parsers: regenerate it with "
        f"`{cli_reference.REGENERATE}`")


def test_every_command_and_sub_command_has_a_section():
    page = cli_reference.render()
    for name in cli_reference.console_scripts():
        assert f"\n## `{name}`\n" in page and f"usage: {name} " in page
    for sub in ("ensemble", "single"):
        assert f"\n### `tfislr-export {sub}`\n" in page and f"usage: tfislr-export {sub} " in page


def test_rendering_imports_no_tensorflow():
    """Commands parse their options before TensorFlow loads, so the page renders without it
    (in a fresh process: other tests in this one load TensorFlow)."""
    result = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, 'scripts'); import cli_reference; "
         "cli_reference.render(); print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout
