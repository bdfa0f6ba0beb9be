"""`tfislr-model --config len80`: summaries and parameter counts of a config's models.

(Here and not in `tfislr/model/__main__.py`: `python -m tfislr.model` would import the
package, hence TensorFlow, before `tfislr.runtime.start_tensorflow` could quiet its start-up.)

Builds the big (student/teacher) and the distilled (exported) model from the config's
`model` section without running data through them, prints each Keras summary, the
trainable parameter count per part and the total.
"""

import argparse
import contextlib
import os
import sys

from tfislr.cli.help import HelpFormatter
from tfislr.cli.command import command, positive_int, start_tensorflow
from tfislr.cli.run_options import config_help


# Wide enough for the "Param #" column of the summaries of every config.
SUMMARY_COLUMNS = 120


@contextlib.contextmanager
def summary_width(columns=SUMMARY_COLUMNS):
    """Keras prints summaries through rich, whose console is 80 columns wide when stdout is
    not a terminal (then the "Param #" column is dropped). Keras gives no width option for
    that console and rich reads it from `COLUMNS` only, so this sets `COLUMNS` while the
    body runs (unless the user set it) and removes it afterwards: argparse's `--help` and
    the rest of the process keep the terminal's width.
    """
    if "COLUMNS" in os.environ:
        yield
        return
    os.environ["COLUMNS"] = str(columns)
    try:
        yield
    finally:
        os.environ.pop("COLUMNS", None)


@command("tfislr-model")
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="tfislr-model",
        description="Summaries and parameter counts of a config's big and distilled model.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--config", default="len80", help=config_help())
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--num-classes", type=positive_int, default=250,
                        help="classes of the head: the number of signs")
    parser.add_argument("--no-summary", action="store_true", help="only the parameter counts")
    args = parser.parse_args(argv)

    from tfislr.config import load_config

    config = load_config(args.config, args.overrides)  # a bad config answers before TF loads
    start_tensorflow()
    from tfislr.model import build_classifier, parameter_groups

    for distilled in (False, True):
        kind = "distilled" if distilled else "big"
        model = build_classifier(
            config.model,
            args.num_classes,
            config.data.max_len,
            distilled=distilled,
            name=f"{config.name}_{kind}",
        )
        if not args.no_summary:
            with summary_width():
                model.summary()
        widths = list(zip(model.encoder.hidden_dims, model.encoder.output_dims))
        print(
            f"{config.name} {kind}: dense_dim {model.dense_dim}, "
            f"transfo_dim {model.transfo_dim}, transformer layers (hidden -> out) {widths}, "
            f"dropout {model.encoder.dropout_rates}"
        )
        groups = parameter_groups(model)
        for group, count in groups.items():
            print(f"  {group:<18} {count:>12,}")
        print(f"  {'trainable total':<18} {sum(groups.values()):>12,}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
