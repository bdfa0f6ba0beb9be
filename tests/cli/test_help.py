"""Every command's `--help` (tfislr/cli/help.py): a default is shown where it says something."""

import argparse
import importlib
import importlib.util
import os
import pathlib
import re
import tomllib

import pytest

from tfislr.cli.help import HelpFormatter

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
# What argparse shows for an option that was left out: the help must say what that means.
EMPTY_DEFAULT = re.compile(r"\(default: (None|False|True|\[\]|)\)")


def _help(capsys, name, *sub):
    module, function = SCRIPTS[name].split(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as exited:
        main([*sub, "--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # unwrapped


@pytest.mark.parametrize("name, sub", [(name, ()) for name in SCRIPTS]
                         + [("tfislr-export", ("ensemble",)), ("tfislr-export", ("single",))])
def test_no_help_shows_an_empty_default(capsys, name, sub):
    text = _help(capsys, name, *sub)
    assert text.startswith(f"usage: {' '.join([name, *sub])} ")
    assert not EMPTY_DEFAULT.search(text), EMPTY_DEFAULT.search(text).group()


@pytest.mark.parametrize("name, sub", [(name, ()) for name in SCRIPTS]
                         + [("tfislr-export", ("ensemble",)), ("tfislr-export", ("single",))])
def test_defaults_are_written_one_way(capsys, name, sub):
    text = _help(capsys, name, *sub)
    assert not re.search(r"\(default [^:]", text), re.search(r"\(default [^:].{0,20}", text)
    # One parenthesis per option: "(resumes ...) (default: ...)" reads as two afterthoughts.
    assert ") (default" not in text


def _parsers(main, monkeypatch):
    """The parser `main` builds, and its sub-commands' parsers: `parse_args` is stopped
    (SystemExit, which the error contract lets through) before the command runs."""
    built = []

    def capture(parser, *args, **kwargs):
        built.append(parser)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        main(["--help"])  # tfislr-extract parses only --help outside its environment
    (parser,) = built
    subcommands = [action.choices.values() for action in parser._actions
                   if isinstance(action, argparse._SubParsersAction)]
    return [parser, *(sub for choices in subcommands for sub in choices)]


def _demo_main():
    spec = importlib.util.spec_from_file_location("demo", REPO / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("name", [*SCRIPTS, "demo.py"])
def test_every_option_has_help(monkeypatch, name):
    if name == "demo.py":
        main = _demo_main()
    else:
        module, function = SCRIPTS[name].split(":")
        main = getattr(importlib.import_module(module), function)
    parsers = _parsers(main, monkeypatch)
    for parser in parsers:
        assert parser.formatter_class is HelpFormatter, parser.prog
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip(), (parser.prog, action.option_strings
                                                         or action.dest)


def test_export_single_help_is_its_own(capsys):
    single = _help(capsys, "tfislr-export", "single")
    assert "--quantization {fp16,fp32,int8} weight format (default: fp16)" in single
    assert "YAML" not in single and "--runs-dir" not in single
    assert "the YAML's quantization, else fp16" in _help(capsys, "tfislr-export", "ensemble")


def test_model_help_keeps_the_terminal_width(capsys, monkeypatch):
    """tfislr-model widens Keras's summaries only: its --help wraps like every command's."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr("shutil.get_terminal_size", lambda *a, **k: os.terminal_size((80, 24)))
    module = importlib.reload(importlib.import_module("tfislr.cli.model"))  # runs its import
    with pytest.raises(SystemExit):
        module.main(["--help"])
    assert max(map(len, capsys.readouterr().out.splitlines())) <= 80
    assert "COLUMNS" not in os.environ


def test_summary_width_is_set_for_the_summary_only(monkeypatch):
    from tfislr.cli.model import summary_width

    monkeypatch.delenv("COLUMNS", raising=False)
    with pytest.raises(RuntimeError), summary_width(120):
        assert os.environ["COLUMNS"] == "120"
        raise RuntimeError("a summary that fails")
    assert "COLUMNS" not in os.environ
    monkeypatch.setenv("COLUMNS", "90")  # the user's width wins
    with summary_width(120):
        assert os.environ["COLUMNS"] == "90"
    assert os.environ["COLUMNS"] == "90"


def test_the_package_does_not_use_test_libraries():
    """unittest.mock and pytest are for tests: the commands' code does not patch itself."""
    test_only = re.compile(r"^\s*(import|from)\s+(unittest|pytest)\b", re.MULTILINE)
    sources = [*(REPO / "tfislr").rglob("*.py"), *REPO.glob("*.py")]
    assert len(sources) > 50
    used = [str(path.relative_to(REPO)) for path in sources if test_only.search(path.read_text())]
    assert used == []

def test_help_says_what_a_left_out_option_means(capsys):
    assert ("--fold FOLD score only the signers of this fold, held out when the run validated "
            "on it (default: every sequence)") in _help(capsys, "tfislr-evaluate")
    train = _help(capsys, "tfislr-train")
    assert "--fold FOLD validation fold (default: 0)" in train
    assert "--epochs EPOCHS shortcut for --set train.epochs=N (default: the config's)" in train
    assert "(default: a new OUTPUT/<config>/<timestamp>," in train
    assert "(default: a new OUTPUT/<config>/cv/<timestamp>)" in _help(capsys, "tfislr-cv")


def test_config_help_lists_the_training_configs_only(capsys):
    from tfislr.config import CONFIGS_DIR

    ensembles = sorted(p.stem for p in CONFIGS_DIR.glob("*ensemble*.yaml"))
    assert ensembles  # configs/ensemble.yaml, configs/demo_ensemble.yaml
    for name in ("tfislr-train", "tfislr-cv", "tfislr-model"):
        text = _help(capsys, name)
        config_help = re.search(r"--config CONFIG (.*?) --[a-z]", text.split("options:")[1])[1]
        assert config_help.startswith("training config: one of demo, len25, len80 "), config_help
        assert not any(e in config_help for e in ensembles), config_help


def test_formatter_shows_real_defaults_only():
    parser = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter)
    parser.add_argument("--zero", type=int, default=0, help="a zero")  # 0 == False: still shown
    parser.add_argument("--none", help="left out: nothing")
    parser.add_argument("--flag", action="store_true", help="a flag")
    parser.add_argument("--many", action="append", default=[], help="repeatable")
    parser.add_argument("--said", default=3, help="stated (default 3)")
    text = " ".join(parser.format_help().split())
    assert "a zero (default: 0)" in text
    assert "left out: nothing --flag a flag --many MANY repeatable --said SAID stated (default 3)" \
        in text


# The commands that are not console scripts (run as python -m ...), by their main.
MODULE_COMMANDS = {"python -m tfislr.data.synthetic": "tfislr.cli.synthetic:main"}


def _main(name):
    if name == "demo.py":
        return _demo_main()
    module, function = {**SCRIPTS, **MODULE_COMMANDS}[name].split(":")
    return getattr(importlib.import_module(module), function)


@pytest.mark.parametrize("name", MODULE_COMMANDS)
def test_module_commands_options_have_help(monkeypatch, name):
    for parser in _parsers(_main(name), monkeypatch):
        assert parser.formatter_class is HelpFormatter, parser.prog
        for action in parser._actions:
            assert action.help and action.help.strip(), (parser.prog, action.dest)


# Markdown that a terminal shows as is: `code`, **bold**, [text](link).
MARKDOWN = re.compile(r"`|\*\*|\]\(")


@pytest.mark.parametrize("name", [*SCRIPTS, *MODULE_COMMANDS, "demo.py"])
def test_no_help_shows_markdown(monkeypatch, name):
    for parser in _parsers(_main(name), monkeypatch):
        text = parser.format_help()
        assert not MARKDOWN.search(text), (parser.prog, MARKDOWN.search(text).group(),
                                           text[max(0, MARKDOWN.search(text).start() - 60):]
                                           [:120])
