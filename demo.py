"""The README demo: synthetic data → full training recipe → TFLite export, in a few minutes on a CPU.

    python demo.py [--data-dir demo_data] [--output runs] [--epochs N] [--skip-export]

1. writes a synthetic data set in the exact Kaggle `asl-signs` layout (skipped when
   `--data-dir` already holds one);
2. trains `configs/demo.yaml` — big student, EMA teacher, distilled model, augmentations,
   manifold mixup, OUSM, soup — validating on signers never seen in training (fold 0);
3. exports the distilled soup model to one Kaggle-contract `.tflite` file
   (`tfislr.export.export_ensemble`) and checks it.
"""

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))

from tfislr.cli.help import HelpFormatter  # noqa: E402  (after the sys.path line above)
from tfislr.cli.command import command, positive_int, start_tensorflow  # noqa: E402
from tfislr import atomic  # noqa: E402
from tfislr.data.kaggle import SIGN_MAP_JSON, TRAIN_CSV  # noqa: E402
from tfislr.errors import ConfigError  # noqa: E402

# The synthetic set of the demo: 10 signers (fold 0 holds some of them out), 12 signs.
DEMO_DATA = {"num_signs": 12, "num_participants": 10, "sequences_per_sign": 40, "seed": 0}


LAYOUT = (TRAIN_CSV, SIGN_MAP_JSON)
# What an interrupted synthetic write leaves (train.csv and the sign map come last).
PARTIAL_WRITE = {"train_landmark_files"}


def holds_data_set(data_dir):
    """Whether `data_dir` holds a Kaggle-layout data set (used as it is)."""
    return all((data_dir / name).is_file() for name in LAYOUT)


def check_paths(args):
    """Checks, before anything is trained, the paths the demo reads and writes.

    `--data-dir` must hold a data set, or be a folder the synthetic one may be written into:
    missing, empty, or left by an interrupted demo (only train_landmark_files/). Anything
    else may be someone's data, which the demo's files would replace.

    Raises:
        ConfigError: a path that is a file where a folder is needed (or the reverse), a
            non-empty folder without a data set, or a folder that cannot be written.
    """
    data_dir = pathlib.Path(args.data_dir)
    if not holds_data_set(data_dir):
        if data_dir.exists() and not data_dir.is_dir():
            raise ConfigError(f"{data_dir}: is a file; --data-dir is the synthetic data set's "
                              "folder")
        if data_dir.is_dir() and {entry.name for entry in data_dir.iterdir()} - PARTIAL_WRITE:
            raise ConfigError(f"{data_dir}: not empty and no data set in it ({' and '.join(LAYOUT)}"
                              "); the demo writes its synthetic set into a new or empty folder")
        atomic.check_writable_dir(data_dir)
    atomic.check_writable_dir(args.output)
    if not args.skip_export:
        atomic.check_writable_file(args.tflite)


def make_data(data_dir):
    from tfislr.data.synthetic import write_synthetic_dataset

    if holds_data_set(data_dir):
        print(f"[demo] using the data set in {data_dir}", flush=True)
        return data_dir
    print(f"[demo] writing a synthetic data set to {data_dir}", flush=True)
    return write_synthetic_dataset(
        data_dir, num_workers=os.cpu_count() or 1, progress=True, **DEMO_DATA
    )


def export_run(run_dir, output_path):
    """The demo's export step: the run's distilled soup model → one checked .tflite file.

    The same call as `python export.py ensemble --config demo_ensemble`, with this run
    named explicitly: a config name looks up full-fit runs only, and the demo's run
    validated on fold 0. Returns the export report (also written next to the file).
    """
    from tfislr.export import export_ensemble

    return export_ensemble([str(run_dir)], output_path=str(output_path), verbose=True)


@command("demo.py")
def main(argv=None):
    parser = argparse.ArgumentParser(prog="demo.py", formatter_class=HelpFormatter,
                                     description="tfislr demo: synthetic data → train → export")
    parser.add_argument("--data-dir", default=str(REPO / "demo_data"),
                        help="the synthetic data set in the Kaggle layout: written here (a new "
                             "or empty folder), or used as it is when the folder holds one")
    parser.add_argument("--output", default=str(REPO / "runs"), help="runs root folder")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="override the demo config's epochs (default: tfislr/configs/demo.yaml's)")
    parser.add_argument("--tflite", default=str(REPO / "artifacts" / "demo.tflite"),
                        help="the exported .tflite; its report: the same name, .json")
    parser.add_argument("--skip-export", action="store_true",
                        help="stop after training (no .tflite)")
    args = parser.parse_args(argv)
    check_paths(args)
    start_tensorflow()
    from tfislr.config import load_config

    overrides = [] if args.epochs is None else [f"train.epochs={args.epochs}"]
    config = load_config("demo", overrides)
    timings = {}
    start = time.perf_counter()
    data_dir = make_data(pathlib.Path(args.data_dir))
    timings["data_seconds"] = round(time.perf_counter() - start, 1)

    from tfislr.training.run import train
    from tfislr.runs.run_dir import RunDir

    start = time.perf_counter()
    run_dir = train(config, data_dir, output_dir=args.output, fold=0)
    timings["train_seconds"] = round(time.perf_counter() - start, 1)
    metrics = RunDir(run_dir).read_metrics()

    report = None
    if not args.skip_export:
        start = time.perf_counter()
        pathlib.Path(args.tflite).parent.mkdir(parents=True, exist_ok=True)
        report = export_run(run_dir, args.tflite)
        timings["export_seconds"] = round(time.perf_counter() - start, 1)

    total = sum(timings.values())
    print("\n[demo] held-out signers, validation accuracy (last epoch → soup):")
    for name, values in metrics["models"].items():
        print(f"[demo]   {name:9s} {values['last_epoch_accuracy']:.3f} → {values['soup_accuracy']:.3f}")
    print(f"[demo] run dir: {run_dir}")
    if report is not None:
        print(f"[demo] tflite: {args.tflite} ({report['size']['mb']:.2f} MB)")
    print(f"[demo] time: " + ", ".join(f"{k.replace('_seconds', '')} {v:.0f} s" for k, v in timings.items())
          + f", total {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
