"""The options `tfislr-train` and `tfislr-cv` share (data, config, strategy, output), and the
config and strategy they give (`--strategy NAME` is short for `--set runtime.strategy=NAME`).

`run_request` is the one place these commands check a request before any data is read:
the config and `--set` without TensorFlow (a bad one answers at once), then TensorFlow starts
and `tfislr.training.request.RunRequest.validate` checks the rest, once.
"""

import sys

from tfislr.cli.command import positive_int, start_tensorflow
from tfislr.errors import ConfigError


def config_help():
    """`--config`'s help: the shipped training configs (never the ensemble files)."""
    from tfislr.config import training_config_names

    return (f"training config: one of {', '.join(training_config_names())} (shipped in "
            "tfislr/configs/) or a YAML path")


def add_run_options(parser):
    """The options `tfislr-train` and `tfislr-cv` share: data, config, strategy, output."""
    parser.add_argument("--config", required=True, help=config_help())
    parser.add_argument("--data-dir", required=True, help="Kaggle layout: train.csv, sign map, train_landmark_files/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override, e.g. --set train.epochs=5 (repeatable)")
    parser.add_argument("--strategy", default=None,
                        help="where to train, short for --set runtime.strategy=NAME (default: "
                             "the config's, 'default'): default = TF's default strategy, one "
                             "device, the GPU if there is one; mirrored = all local GPUs; "
                             "multi_worker = the cluster in TF_CONFIG; tpu; cpu:N or gpu:N[:MB] "
                             "= N logical devices")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="shortcut for --set train.epochs=N (default: the config's)")
    parser.add_argument("--output", default="runs", help="runs root folder")
    parser.add_argument("--force-prepare", action="store_true",
                        help="rebuild the prepared landmark store of the config's max_len "
                             "first, as tfislr-prepare --force does (default: reuse a store "
                             "that matches the data, rebuild a stale one)")
    parser.add_argument("--verbose", default="auto", choices=["auto", "0", "1", "2"],
                        help="Keras fit verbosity: 0 = silent, 1 = progress bar, 2 = one line "
                             "per epoch, auto = Keras's choice, which is the progress bar")


def run_request(args, prog, cv=False):
    """The validated `RunRequest` of parsed `add_run_options` (tfislr.training.request): the
    config with `--set` and `--epochs` first, without TensorFlow (a bad one answers at once),
    then TensorFlow starts and the request is checked, once. With `--force-prepare`, the
    store is then rebuilt here, before the run reads it. `cv`: the request of a
    cross-validation (`tfislr-cv`, `tfislr-train --cv`), whose folder is `--cv-dir` or, for
    `tfislr-train --cv`, `--run-dir`; `--resume` picks the newest unfinished one that can
    be resumed (said on stderr as `<prog>: resuming ...`, with a note per one passed over)."""
    from tfislr.config import load_config
    from tfislr.data.folds import check_fold

    overrides = list(args.overrides)
    if args.strategy is not None:
        overrides.append(_strategy_override(args.strategy, overrides))
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    config = load_config(args.config, overrides)
    fold = None if (cv or getattr(args, "full", False)) else getattr(args, "fold", None)
    if fold is not None:  # named as the user typed it, before TensorFlow starts
        check_fold(fold, config.data.num_folds, "--fold")
    start_tensorflow()
    from tfislr.training.request import RunRequest

    # tfislr-train has --run-dir (its CV folder with --cv), tfislr-cv has --cv-dir.
    folder = getattr(args, "run_dir", None) or getattr(args, "cv_dir", None)
    full = getattr(args, "full", False)
    if getattr(args, "resume", False):
        folder = _resumed_folder(args, config, cv, prog)
    request = RunRequest(config, args.data_dir, output_dir=args.output, run_dir=folder,
                         fold=fold, full=full, cv=cv).validate()
    if args.force_prepare:
        from tfislr.data.prepare import ensure_store

        ensure_store(request.data_dir, config.data.max_len, config.data.prepared_dir,
                     force=True)
    return request


def _strategy_override(name, overrides):
    """`--strategy NAME` as the override it is short for, `runtime.strategy=NAME`.

    Raises:
        ConfigError: NAME is not a strategy's name, or a `--set runtime.strategy=...` among
            `overrides` names another one (one value, given once).
    """
    from tfislr.config import parse_strategy

    try:
        wanted = parse_strategy(name)
    except ConfigError as error:
        raise ConfigError(f"--strategy: {error}") from None
    for item in overrides:
        key, _, value = item.partition("=")
        if key.strip() != "runtime.strategy":
            continue
        try:
            given = parse_strategy(value)
        except ConfigError:
            continue  # not a strategy: load_config says so, naming this --set
        if given != wanted:
            raise ConfigError(f"--strategy {name} contradicts --set {item}; give the strategy "
                              "once")
    return f"runtime.strategy={name}"


def _resumed_folder(args, config, cv, prog):
    """`--resume`: the newest unfinished run (or CV) of the config under `--output` that can be
    resumed (`runs.run_dir.resumable_run`, `runs.cv_dir.resumable_cv`), or None (a new one
    starts). The runs passed over (another config; died before their first backed-up epoch)
    are each said on stderr as a note."""
    if cv:
        from tfislr.runs.cv_dir import resumable_cv

        folder, notes = resumable_cv(args.output, config, args.data_dir,
                                     getattr(args, "weights", "distilled"))
        what = "CV"
    else:
        from tfislr.runs.run_dir import resumable_run

        run, notes = resumable_run(args.output, config)
        folder, what = (None if run is None else run.path), "run"
    for note in notes:
        print(f"{prog}: note: {note}", file=sys.stderr)
    print(f"{prog}: {'resuming ' + str(folder) if folder else f'no unfinished {what}; starting a new one'}",
          file=sys.stderr)
    return folder
