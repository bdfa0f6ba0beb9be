"""The options `tfislr-train` and `tfislr-cv` share (data, config, strategy, output), and the
config and strategy they give.

`config_and_strategy` is the one place these commands check a request before any data is read:
the config and `--set` without TensorFlow (a bad one answers at once), then TensorFlow starts,
the strategy is built and `tfislr.training.request.check_request` checks the rest.
"""

from tfislr.cli.command import positive_int, start_tensorflow


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
    parser.add_argument("--strategy", default="default",
                        help="where to train: default = TF's default strategy, one device, "
                             "the GPU if there is one; mirrored = all local GPUs; multi_worker "
                             "= the cluster in TF_CONFIG; tpu; cpu:N or gpu:N[:MB] = N logical "
                             "devices")
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


def config_and_strategy(args):
    """The config (with `--set` and `--epochs`) and the strategy of parsed `add_run_options`,
    checked as far as they can be without data (`run.check_run_settings`), and the folder
    the run writes (`--run-dir`, `--cv-dir`, else `--output`) checked writable; with
    `--force-prepare`, the store is then rebuilt here, before the run reads it."""
    from tfislr import atomic
    from tfislr.config import load_config

    # tfislr-train has --run-dir (its CV folder with --cv), tfislr-cv has --cv-dir.
    atomic.check_writable_dir(getattr(args, "run_dir", None) or getattr(args, "cv_dir", None)
                              or args.output)

    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    config = load_config(args.config, overrides)
    start_tensorflow()
    # Before anything else touches TF: `cpu:N` / `gpu:N` must split the device first.
    from tfislr.training.strategy import get_strategy

    strategy = get_strategy(args.strategy)
    from tfislr.training.run import check_run_settings

    # tfislr-train --fold K (not --full / --cv) trains fold K; tfislr-cv has no --fold.
    one_fold = not (getattr(args, "full", False) or getattr(args, "cv", False))
    check_run_settings(config, strategy, getattr(args, "fold", None) if one_fold else None)
    if args.force_prepare:
        from tfislr.data.prepare import ensure_store

        ensure_store(args.data_dir, config.data.max_len, config.data.prepared_dir, force=True)
    return config, strategy
