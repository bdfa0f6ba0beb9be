"""Config loading, overrides and strict validation."""

import json

import pytest

from tfislr import config as config_lib
from tfislr.config import load_config
from tfislr.errors import ConfigError


def test_len80_and_len25_values():
    len80 = config_lib.load_config("len80")
    assert (len80.data.max_len, len80.model.dense_dim, len80.model.transfo_dim) == (80, 256, 1024)
    assert (len80.model.distill_dense_dim, len80.model.distill_transfo_dim) == (192, 576)
    len25 = config_lib.load_config("len25")
    assert (len25.data.max_len, len25.model.dense_dim, len25.model.transfo_dim) == (25, 512, 1536)
    assert len25.model.distill_transfo_dim == 768
    assert len25.name == "len25"


def test_overrides_are_typed():
    config = config_lib.load_config("len80", ["train.epochs=3", "augment.enabled=false",
                                              "train.learning_rate=1e-3"])
    assert config.train.epochs == 3
    assert config.augment.enabled is False
    assert config.train.learning_rate == pytest.approx(1e-3)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown key"),
        ("training.epochs=3", "section"),
        ("train.epochs=many", "expects an integer"),
        ("augment.enabled=maybe", "true/false"),
        ("model.num_heads=7", "divisible"),
        ("train.batch_group_size=3", "must exceed train.ousm_k"),
        ("data.global_batch_size=100", "multiple of train.batch_group_size"),
        ("data.batch_size=32", "now data.global_batch_size"),
        ("augment.flip_p=1.5", r"augment.flip_p must be in \[0.0, 1.0\], got 1.5"),
        ("augment.scale_min=2", "scale_min"),
        ("augment.max_rotation_degrees=-1", "max_rotation_degrees"),
        ("train.label_smoothing=1", "label_smoothing"),
        ("train.mix_alpha=0", "mix_alpha"),
        ("model.drop_rate=1", "drop_rate"),
        ("data.num_folds=1", "num_folds"),
        ("epochs", "section.key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ValueError, match=message) as raised:
        config_lib.load_config("len80", [override])
    # The file is fine: the error names the override the user typed, not only the file.
    assert str(raised.value).startswith(f"--set {override} (on len80.yaml): ")


@pytest.mark.parametrize(
    "key", ["train.learning_rate", "model.drop_rate", "augment.flip_p", "train.ema_decay",
            "augment.scale_max", "train.mix_end_fraction"],  # the last two have no range
)
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "nan", "inf"])
def test_every_float_key_must_be_finite(key, value):
    with pytest.raises(ConfigError, match=f"config key '{key}' expects a finite number"):
        config_lib.load_config("len80", [f"{key}={value}"])


def test_range_checks_refuse_nan_and_inf_in_configs_built_in_code():
    from tfislr.checks import check_range

    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match=r"x must be in \(-inf, inf\)"):
            check_range("x", value)
        with pytest.raises(ValueError, match=r"must be in \[0.0, 1.0\]"):
            config_lib.validate_section(
                "augment", config_lib.AugmentConfig(flip_p=value))
    assert check_range("x", 1e300) == 1e300 and check_range("x", 10**400) == 10**400


@pytest.mark.parametrize("name", ["", ".", "..", "../../../tmp/evil_name", "a/b", "a\\b", "/abs"])
def test_the_name_is_one_folder_name(tmp_path, name):
    with pytest.raises(ConfigError, match="name must be one folder name") as raised:
        config_lib.load_config("len80", [f"name={name}"])
    assert str(raised.value).startswith(f"--set name={name} (on len80.yaml): ")
    path = tmp_path / "mine.yaml"
    path.write_text(json.dumps({"name": name}))  # YAML: the file's own name is checked too
    with pytest.raises(ConfigError, match="name must be one folder name"):
        config_lib.load_config(str(path))
    assert config_lib.load_config("len80", ["name=my.run-2"]).name == "my.run-2"


def test_a_bad_override_among_good_ones_is_the_one_named():
    good = ["train.seed=1", "train.epochs=3"]
    for bad, message in [("train.ousm_k=many", "config key 'train.ousm_k' expects an integer"),
                         ("data.max_len=[1", "the value of 'data.max_len' is not valid YAML (")]:
        with pytest.raises(ConfigError) as raised:
            config_lib.load_config("len80", [good[0], bad, good[1]])
        assert str(raised.value).startswith(f"--set {bad} (on len80.yaml): {message}")
        assert "\n" not in str(raised.value)
    # Keys valid one by one but not together: those two overrides are named.
    with pytest.raises(ConfigError) as raised:
        config_lib.load_config("len80", [good[0], "train.ousm_k=20", good[1],
                                         "train.batch_group_size=16"])
    assert str(raised.value).startswith(
        "--set train.ousm_k=20 --set train.batch_group_size=16 together (on len80.yaml): "
        "train.batch_group_size (16) must exceed train.ousm_k (20)")
    # ... while an order that passes through an invalid combination is fine.
    config = config_lib.load_config("len80", ["train.ousm_k=40", "train.batch_group_size=64"])
    assert (config.train.ousm_k, config.train.batch_group_size) == (40, 64)


def test_a_bad_file_is_named_even_with_overrides(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  epochs: many\n")
    with pytest.raises(ValueError, match="expects an integer") as raised:
        config_lib.load_config(str(path), ["train.seed=1"])
    assert str(raised.value).startswith(f"{path}: ")


def test_unknown_config_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="not one of demo, len25, len80$"):
        config_lib.load_config("len81")


def test_an_ensemble_file_is_not_a_training_config():
    with pytest.raises(ValueError, match="ensemble.yaml: an ensemble file .*demo, len25, len80$"):
        config_lib.load_config("ensemble")


def test_json_round_trip(tmp_path):
    config = config_lib.load_config("len25", ["train.epochs=7"])
    path = tmp_path / "config.json"
    config.to_json(path)
    assert config_lib.config_from_dict(json.loads(path.read_text())) == config


@pytest.mark.parametrize("override", ["train.epochs=", "train.epochs=null"])
def test_an_empty_override_is_named_as_such(override):
    with pytest.raises(ConfigError) as raised:
        config_lib.load_config("len80", [override])
    assert str(raised.value).startswith(
        f"--set {override} (on len80.yaml): config key 'train.epochs' is empty (null)")


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_an_empty_config_file_is_an_error_naming_the_file(tmp_path, text):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"^{path}: empty config$"):
        config_lib.load_config(str(path))


def test_an_optional_key_may_be_null_and_a_section_empty(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("data:\n  prepared_dir: null\ntrain:\n")
    config = config_lib.load_config(str(path))
    assert config.data.prepared_dir is None and config.train == config_lib.TrainConfig()


def _empty(key):
    return (f"config key '{key}' is empty (null); give it a value, or delete the key to use its "
            "default")


@pytest.mark.parametrize("text, problem", [
    ("name: null\n", _empty("name")),  # was the run name "None"
    ("name:\n", _empty("name")),
    ("train:\n  epochs: null\n", _empty("train.epochs")),
    ("train:\n  precision: null\n", _empty("train.precision")),  # a string: was "None"
    ("augment:\n  enabled: ~\n", _empty("augment.enabled")),
    ("train:\n  mixed_precision: null\n", _empty("train.mixed_precision")),
    ("runtime:\n  strategy: null\n", _empty("runtime.strategy")),
    ("runtime: [default]\n", "config section 'runtime' must be a mapping"),
    ("runtime:\n  precision: float16\n", "runtime.precision must be one of float32, "),
    ("runtime:\n  jit_compile: sometimes\n",
     "config key 'runtime.jit_compile' expects true/false, got 'sometimes'"),
    ("runtime:\n  strategy: gpu:2:0\n",
     "runtime.strategy: strategy 'gpu:2:0': the MB per device must be >= 1, got 0"),
    ("runtime:\n  threads: 2\n", "unknown key(s) in config section 'runtime': threads; "
                                   "known keys: jit_compile, precision, strategy"),
    ("train:\n  precision: mixed_float16\nruntime:\n  precision: float32\n",
     "train.precision=mixed_float16 contradicts runtime.precision=float32; set only "
     "runtime.precision"),
    ("- a\n- b\n", "expected a mapping of keys, got a list"),
    ("name: [a, b]\n", "config key 'name' expects a text, got ['a', 'b']"),
    ("train: {epochs: [1\n", "not valid YAML"),
])
def test_a_bad_file_value_is_named_with_the_file(tmp_path, text, problem):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        config_lib.load_config(str(path))
    assert str(raised.value).startswith(f"{path}: {problem}")


@pytest.mark.parametrize("bad, message", [
    ("train.epochs=abc", "config key 'train.epochs' expects an integer, got 'abc'"),
    ("train.epochs=2.5", "config key 'train.epochs' expects an integer, got 2.5"),
    ("train.epochs=-1", r"train.epochs must be in [1, inf), got -1"),
    ("runtime.precision=float64", "runtime.precision must be one of"),
    ("train.precision=float64", "runtime.precision must be one of"),  # the old spelling
    ("runtime.strategy=warp:9", "runtime.strategy: unknown strategy 'warp:9'"),
    ("runtime.strategy=cpu:0", "runtime.strategy: strategy 'cpu:0': the device count"),
    ("augment.hand_fill=readme", "augment.hand_fill must be one of original, missing_frames"),
    ("augment.device=gpu", "augment.device must be one of host, accelerator"),
    ("model.pos_conv_padding=same", "model.pos_conv_padding must be one of max_len, extended"),
    ("train.epochz=3", "unknown key(s) in config section 'train': epochz"),
    ("name=a/b", "name must be one folder name"),
])
def test_a_bad_override_is_an_error_even_when_a_later_one_replaces_it(bad, message):
    # A repeated key, or a command option appended after the --set values (--epochs N is
    # train.epochs=N last): the replaced value is still checked and named.
    key = bad.split("=")[0]
    later = {"train.epochs": "train.epochs=3", "runtime.precision": "runtime.precision=float32",
             "train.precision": "runtime.precision=float32",
             "runtime.strategy": "runtime.strategy=default", "name": "name=ok"}.get(
                 key, "train.seed=1")
    with pytest.raises(ConfigError) as raised:
        config_lib.load_config("len80", [bad, later])
    assert str(raised.value).startswith(f"--set {bad} (on len80.yaml): {message}")
    assert config_lib.load_config("len80", ["train.epochs=5", "train.epochs=3"]).train.epochs == 3


# ----------------------------------------------------------------------------- extremes
_EXTREMES = {int: (-1, 0, 2**31, 2**32 - 1, 2**63), float: (-1e300, -1.0, 0.0, 1e-300, 1e300)}


def _numeric_keys():
    """(dotted key, int or float) of every numeric key of every section."""
    import dataclasses
    import typing

    from tfislr.config import _SECTIONS

    for section, cls in _SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if hints[field.name] in _EXTREMES:
                yield f"{section}.{field.name}", hints[field.name]


@pytest.mark.large  # two trainings
def test_every_numeric_key_at_its_extremes_is_rejected_at_load_or_runs(synthetic_data_dir,
                                                                       tmp_path):
    """Each numeric key at each extreme is refused when the config loads (a ConfigError,
    exit 2 in every command) or trains: the lowest accepted extremes of every key together,
    then the highest, each run for one epoch of a small model."""
    from tfislr.errors import ConfigError
    from tfislr.training.run import train

    accepted = {}
    for dotted, kind in _numeric_keys():
        for value in _EXTREMES[kind]:
            try:
                load_config("demo", [f"{dotted}={value}"])
            except ConfigError:
                continue
            accepted.setdefault(dotted, []).append(value)
    # The sizes and counts are bounded (their extremes all refused); what is left is runs.
    assert not {"data.max_len", "data.global_batch_size", "model.transfo_dim",
                "model.num_heads", "train.epochs"} & set(accepted)
    small = ["data.max_len=12", "data.global_batch_size=8", "data.eval_global_batch_size=8",
             "train.batch_group_size=8", "model.embed_dim=4", "model.dense_dim=8",
             "model.transfo_dim=8", "model.distill_dense_dim=8", "model.distill_transfo_dim=8",
             "model.num_heads=2", "model.transfo_layers=1", "train.epochs=1",
             "train.soup_last_n=1", f"data.prepared_dir={tmp_path / 'prepared'}"]
    for pick in (min, max):
        extremes = [f"{key}={pick(values)}" for key, values in accepted.items()]
        config = load_config("demo", extremes + [s for s in small
                                                 if s.split("=")[0] not in accepted])
        run = train(config, synthetic_data_dir, output_dir=tmp_path / pick.__name__, verbose=0)
        assert (run / "finished.json").is_file(), extremes


def test_a_length_the_attention_cannot_hold_is_refused_before_any_work(capsys, tmp_path,
                                                                       synthetic_data_dir):
    """The reported repro: data.max_len=100000 built a store and a run folder, then died of
    an int32 overflow in the attention (exit 1). Now: one line, exit 2, nothing written."""
    from tfislr.cli import train as train_cli

    code = train_cli.main(["--config", "demo", "--data-dir", str(synthetic_data_dir),
                           "--output", str(tmp_path / "runs"), "--set", "data.max_len=100000",
                           "--set", f"data.prepared_dir={tmp_path / 'prepared'}"])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "the attention scores" in lines[0] and "100000" in lines[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "prepared").exists()


# ----------------------------------------------------------------------------- runtime
def test_the_runtime_section_holds_strategy_precision_and_jit_compile(tmp_path):
    config = config_lib.load_config("demo", ["runtime.strategy=cpu:2",
                                             "runtime.precision=mixed_bfloat16",
                                             "runtime.jit_compile=true"])
    assert config.runtime == config_lib.RuntimeConfig("cpu:2", "mixed_bfloat16", True)
    assert config_lib.load_config("demo").runtime == config_lib.RuntimeConfig(
        "default", "float32", False)
    path = tmp_path / "mine.yaml"
    path.write_text("runtime:\n  strategy: Multi-Worker\n  jit_compile: yes\n")
    assert config_lib.load_config(str(path)).runtime == config_lib.RuntimeConfig(
        "multi_worker", "float32", True)  # the standard spelling (strategy_name)


@pytest.mark.parametrize("old, runtime", [
    ({"precision": "mixed_bfloat16"}, {"precision": "mixed_bfloat16"}),
    ({"jit_compile": "true"}, {"jit_compile": True}),
    ({"mixed_precision": True}, {"precision": "mixed_float16"}),
    ({"mixed_precision": "no"}, {"precision": "float32"}),
    ({"precision": "mixed_float16", "mixed_precision": True, "jit_compile": False},
     {"precision": "mixed_float16", "jit_compile": False}),
])
def test_the_old_train_spellings_resolve_into_runtime(old, runtime):
    values = {"name": "x", "train": {"epochs": 3, **old}}
    resolved = config_lib.resolve_runtime_aliases(values)
    assert resolved == {"name": "x", "train": {"epochs": 3}, "runtime": runtime}
    assert values["train"] == {"epochs": 3, **old}  # the caller's mapping is left alone
    config = config_lib.config_from_dict(values)
    assert config == config_lib.config_from_dict({"name": "x", "train": {"epochs": 3},
                                                  "runtime": runtime})
    written = config.to_dict()  # what a new run's config.json holds: runtime.* only
    assert not {"precision", "jit_compile", "mixed_precision"} & set(written["train"])
    assert set(written["runtime"]) == {"strategy", "precision", "jit_compile"}


def test_an_old_spelling_in_set_overrides_the_file_and_contradictions_are_errors(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("runtime:\n  precision: mixed_float16\n  jit_compile: true\n")
    # Each source is resolved on its own; a --set replaces the file's value in any spelling.
    config = config_lib.load_config(str(path), ["train.precision=float32",
                                                "train.jit_compile=false"])
    assert (config.runtime.precision, config.runtime.jit_compile) == ("float32", False)
    assert config_lib.load_config(str(path), ["train.mixed_precision=false"]).runtime.precision \
        == "float32"
    # Within one source, two spellings of one key must agree.
    for overrides, message in [
        (["train.mixed_precision=true", "runtime.precision=float32"],
         "train.mixed_precision=true contradicts runtime.precision=float32"),
        (["train.jit_compile=true", "runtime.jit_compile=false"],
         "train.jit_compile=true contradicts runtime.jit_compile=false; set only "
         "runtime.jit_compile"),
    ]:
        with pytest.raises(ConfigError) as raised:
            config_lib.load_config("demo", overrides)
        assert message in str(raised.value)
    agreeing = ["train.mixed_precision=true", "runtime.precision=mixed_float16"]
    assert config_lib.load_config("demo", agreeing).runtime.precision == "mixed_float16"


def test_a_config_records_the_standard_spelling_of_its_strategy():
    """`runtime.strategy` is read as `parse_strategy` reads it (case, spaces, multi-worker,
    leading zeros) and kept in the spelling the docs use, so config.json and run.json name
    the strategy one way whatever was typed."""
    for typed, standard in [(" Mirrored ", "mirrored"), ("Multi-Worker", "multi_worker"),
                            ("multiworker", "multi_worker"), ("TPU", "tpu"),
                            ("CPU:02", "cpu:2"), ("GPU:8:3500", "gpu:8:3500"),
                            ("gpu:04:0100", "gpu:4:100")]:
        assert config_lib.strategy_name(typed) == standard, typed
        config = config_lib.load_config("demo", [f"runtime.strategy={typed}"])
        assert config.runtime.strategy == standard, typed
        assert config_lib.config_from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown strategy 'warp'"):
        config_lib.strategy_name("warp")


def test_parse_strategy_names_every_form_and_says_what_is_wrong():
    parse = config_lib.parse_strategy
    assert parse(" Default ") == ("default", None, None)
    assert parse("multi-worker") == parse("multiworker") == ("multi_worker", None, None)
    assert parse("gpu:8") == ("GPU", 8, None)
    assert parse("gpu:8:3500") == ("GPU", 8, 3500)
    assert parse("cpu:2") == ("CPU", 2, None)
    for name, message in [
        ("cpu:0", "strategy 'cpu:0': the device count must be >= 1, got 0; valid: cpu:N with "
                  "N >= 1, e.g. cpu:2"),
        ("gpu:2:0", "strategy 'gpu:2:0': the MB per device must be >= 1, got 0; valid: gpu:N "
                    "or gpu:N:MB with N and MB >= 1, e.g. gpu:8 or gpu:8:3500"),
        ("cpu:2:100", "strategy 'cpu:2:100': not a valid form; valid: cpu:N with N >= 1"),
        ("warp:9", "unknown strategy 'warp:9'; expected one of default, mirrored, "
                   "multi_worker, tpu, cpu:N, gpu:N[:MB]"),
    ]:
        with pytest.raises(ConfigError) as raised:
            parse(name)
        assert str(raised.value).startswith(message)


def test_resuming_compares_configs_without_the_strategy_and_in_todays_spelling():
    new = config_lib.load_config("demo").to_dict()
    # An older run's config.json: precision and jit_compile in train, no runtime section.
    old = {key: value for key, value in new.items() if key != "runtime"}
    old["train"] = {**new["train"], "precision": "float32", "jit_compile": False}
    assert config_lib.comparable_config(old) == config_lib.comparable_config(new)
    moved = {**new, "runtime": {**new["runtime"], "strategy": "cpu:2"}}
    assert config_lib.comparable_config(moved) == config_lib.comparable_config(new)
    other = {**new, "runtime": {**new["runtime"], "precision": "mixed_bfloat16"}}
    assert config_lib.comparable_config(other) != config_lib.comparable_config(new)
