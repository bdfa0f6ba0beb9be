"""The commands the documentation gives are real commands with real options.

Nothing here reads the docs' wording: only their shell code blocks (```bash) and the names
in inline code. Each command line of a code block is parsed by that command's own parser
(and its `--config`/`--set` by `load_config`), each script or file it runs must exist, and
the headless notebook command must be one that `jupyter execute` accepts. The command names
come from `pyproject.toml`'s `[project.scripts]`.
"""

import argparse
import importlib
import importlib.metadata
import importlib.util
import pathlib
import re
import shlex
import tomllib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
# `python train.py` / `python export.py` in a checkout are these commands (train.py, export.py).
CHECKOUT_COMMANDS = {"train.py": "tfislr-train", "export.py": "tfislr-export", "demo.py": None}
PYTHONS = {"python", "python3", ".venv/bin/python"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def shell_lines(page):
    """(page, line number, words) of each command line of `page`'s ```bash blocks;
    continuations are joined (numbered by their last line) and comments dropped."""
    lines, block = [], None
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith("```"):
            block = None if block is not None else ([] if line.strip() == "```bash" else False)
            continue
        if block is False or block is None:
            continue
        block.append(line)
        if not line.rstrip().endswith("\\"):
            text = " ".join(part.rstrip().removesuffix("\\") for part in block)
            block.clear()
            words = shlex.split(text, comments=True)
            if words:
                lines.append((page.relative_to(REPO), number, words))
    return lines


ALL_LINES = [line for page in PAGES for line in shell_lines(page)]
COMMANDS = [(f"{page}:{number}", words) for page, number, words in ALL_LINES]


def split_command(words):
    """(environment assignments, the command words) of one line."""
    start = next((i for i, word in enumerate(words) if not ASSIGNMENT.match(word)), len(words))
    return words[:start], words[start:]


def tfislr_command(words):
    """(console script name or a checkout file, its arguments) of a tfislr command; else None."""
    if not words:
        return None
    if words[0] in SCRIPTS:
        return words[0], words[1:]
    if words[0] in PYTHONS and len(words) > 1 and words[1] in CHECKOUT_COMMANDS:
        return words[1], words[2:]
    return None


def _main(name):
    if name == "demo.py":
        spec = importlib.util.spec_from_file_location("demo", REPO / "demo.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.main
    module, function = SCRIPTS[CHECKOUT_COMMANDS.get(name) or name].split(":")
    return getattr(importlib.import_module(module), function)


def _parser(name, monkeypatch):
    """The parser `name`'s main builds: its parse_args is stopped (SystemExit, which the
    error contract lets through) before the command runs."""
    built = []

    def capture(parser, *args, **kwargs):
        built.append(parser)
        raise SystemExit(0)

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", capture)
        with pytest.raises(SystemExit):
            _main(name)(["--help"])  # tfislr-extract parses only --help outside its environment
    return built[0]


def test_pages_have_commands():
    pages = {str(page) for page, _, _ in ALL_LINES}
    assert pages >= {"README.md", "docs/data.md", "docs/training.md"}
    commands = [tfislr_command(split_command(words)[1]) for _, words in COMMANDS]
    assert sum(command is not None for command in commands) >= 20


def test_every_tfislr_name_in_the_docs_is_a_command_and_every_command_is_documented():
    named = set()
    for page in PAGES:
        named.update(re.findall(r"`(tfislr-[a-z]+)\b", page.read_text()))
    for _, words in COMMANDS:
        named.update(word for word in split_command(words)[1][:1] if word.startswith("tfislr-"))
    assert named - set(SCRIPTS) == set(), "named in the docs but not in [project.scripts]"
    assert set(SCRIPTS) - named == set(), "in [project.scripts] but in no docs page"
    for name, entry in SCRIPTS.items():
        module, function = entry.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name


@pytest.mark.parametrize("where, words", [(where, words) for where, words in COMMANDS
                                          if tfislr_command(split_command(words)[1])],
                         ids=[where for where, words in COMMANDS
                              if tfislr_command(split_command(words)[1])])
def test_documented_command_parses(where, words, monkeypatch, capsys):
    from tfislr.config import load_config

    name, argv = tfislr_command(split_command(words)[1])
    if name in CHECKOUT_COMMANDS:
        assert (REPO / name).is_file(), name
    parser = _parser(name, monkeypatch)
    capsys.readouterr()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exited:
        pytest.fail(f"{where}: `{' '.join(words)}` is refused by its parser (exit {exited.code}): "
                    f"{capsys.readouterr().err.strip().splitlines()[-1:]}")
    config = getattr(args, "config", None)
    if config and hasattr(args, "overrides") and not config.endswith((".yaml", ".yml")):
        overrides = [*args.overrides, *([f"train.epochs={args.epochs}"]
                                       if getattr(args, "epochs", None) else [])]
        load_config(config, overrides)  # raises ConfigError for a bad config name or --set


def _script(words):
    """The repository script a command line runs (`scripts/x.sh`, `python benchmarks/x.py`)."""
    command = split_command(words)[1]
    if not command:
        return None
    if command[0].startswith("scripts/"):
        return command[0]
    if command[0] in PYTHONS and command[1:2] and command[1].startswith("benchmarks/"):
        return command[1]
    return None


def test_documented_scripts_exist():
    scripts = {(where, _script(words)) for where, words in COMMANDS if _script(words)}
    assert {script for _, script in scripts} >= {"scripts/demo.sh", "scripts/test.sh"}
    assert [(where, script) for where, script in scripts if not (REPO / script).is_file()] == []


def test_the_headless_notebook_command_is_one_jupyter_execute_takes():
    """The docs' headless notebook command is `jupyter execute` (nbclient's, in
    requirements-dev.txt; nbconvert is not installed), its options are ones that command
    takes, and it runs the repo's notebook, writing the executed copy to a git-ignored place."""
    from nbclient.cli import NbClientApp

    found = [(where, words) for where, words in COMMANDS if "execute" in words
             and any(word.endswith("jupyter") for word in words)]
    assert any(where.startswith("README.md:") for where, _ in found)
    assert "nbclient" in (REPO / "requirements-dev.txt").read_text()
    # The installed nbclient provides the `jupyter execute` subcommand (its console script),
    # wherever its scripts went (a venv's bin, a base environment's, --user).
    assert [entry.value for entry in importlib.metadata.entry_points(
        group="console_scripts", name="jupyter-execute")] == ["nbclient.cli:main"]
    for where, words in found:
        environment, command = split_command(words)
        assert command[:2] == [".venv/bin/jupyter", "execute"], where
        assert all(word.startswith("TFISLR_") for word in environment), where
        app = NbClientApp()
        app.parse_command_line(command[2:])
        (notebook,) = app.extra_args
        assert (REPO / notebook).is_file()
        assert app.output_base, f"{where}: no --output, or one jupyter execute does not take"
        # --output is relative to the notebook's folder: the copy lands in runs/, git-ignored.
        written = (REPO / notebook).parent / app.output_base
        assert written.resolve().parent == REPO / "runs"
    assert "/runs/" in (REPO / ".gitignore").read_text().splitlines()


def test_readme_is_short_enough_for_a_user():
    """Issue 23: the README is for users (at most 150 lines); figures go to benchmarks/, the
    rest to docs/."""
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail into docs/"
