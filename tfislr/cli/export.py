"""`tfislr-export` (or `python export.py`): training runs → one Kaggle-ready TFLite file.

    tfislr-export ensemble [--config ensemble|PATH.yaml] [--output PATH]
                           [--quantization fp16|fp32|int8]
    tfislr-export single --run runs/len80/<timestamp> [--output PATH]

Prints size, TF-vs-TFLite parity, edge-input checks, 1-thread latency and, for int8,
the agreement with the fp32 graph (top-1, max probability diff, accuracy change), and
writes the same report as JSON next to the .tflite file. A failed check (`ExportError`)
or a bad ensemble YAML / run dir is one line `tfislr-export: error: ...` and exit code 2
(`tfislr.errors`).
"""

import argparse
import os
import pathlib
import sys

from tfislr.cli.command import command, positive_float, start_tensorflow
from tfislr.cli.help import HelpFormatter

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

PROG = "tfislr-export"


@command(PROG)
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG, description="Export training runs to one Kaggle-ready TFLite file.",
        formatter_class=HelpFormatter,
    )
    # The metavar makes a missing command say "required: {ensemble,single}".
    sub = parser.add_subparsers(dest="command", required=True, metavar="{ensemble,single}")
    ensemble = sub.add_parser("ensemble", help="export the members of an ensemble YAML",
                              formatter_class=HelpFormatter)
    ensemble.add_argument("--config", default="ensemble",
                          help="ensemble YAML: a path, or the name of a shipped one, "
                               "ensemble or demo_ensemble (default: %(default)s)")
    ensemble.add_argument("--output", help="the .tflite to write; its report: the same name, .json "
                                           "(default: the YAML's output, else "
                                           "artifacts/<name>.tflite)")
    ensemble.add_argument("--quantization", choices=("fp16", "fp32", "int8"),
                          help="weight format (default: the YAML's quantization, else fp16)")
    ensemble.add_argument("--runs-dir", help="where members given by config name are looked "
                                             "up, as <runs-dir>/<config>/<timestamp> "
                                             "(default: the YAML's runs_dir, else runs)")
    single = sub.add_parser("single", help="export one run", formatter_class=HelpFormatter)
    single.add_argument("--run", required=True, help="run dir runs/<config>/<timestamp>")
    single.add_argument("--weights", default="distilled",
                        help="distilled | student | teacher soup, or a .keras path "
                             "(default: %(default)s)")
    single.add_argument("--output", help="the .tflite to write; its report: the same name, .json "
                                         "(default: RUN/model.tflite)")
    single.add_argument("--quantization", choices=("fp16", "fp32", "int8"), default="fp16",
                        help="weight format (default: %(default)s)")
    for command in (ensemble, single):
        command.add_argument("--max-size-mb", type=positive_float, default=40.0,
                             help="fail above this size in MB of 10^6 bytes (default: 40)")
        command.add_argument("--parity-data",
                             help="Kaggle-layout data dir: check parity and time on its clips, "
                                  "and for int8 measure the accuracy change vs fp32 on them "
                                  "(default: generated raw-format clips)")
    args = parser.parse_args(argv)
    start_tensorflow()
    from tfislr.export import export_ensemble

    runs_dir = None  # single: the member is a run dir, no lookup by config name
    options = {}
    if args.command == "ensemble":
        target = args.config
        output = args.output
        runs_dir = args.runs_dir
    else:
        target = [{"run": args.run, "weights": args.weights}]
        options["member_role"] = "--run"  # what its run-dir errors name
        output = args.output or str(pathlib.Path(args.run) / "model.tflite")
    export_ensemble(target, output, args.quantization, runs_dir=runs_dir,
                    max_size_mb=args.max_size_mb, parity_clips=args.parity_data, **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
