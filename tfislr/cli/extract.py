"""`tfislr-extract`: video files and folders → a data dir in the competition's layout (the
library side: `tfislr.video.extract`).

It runs in the extraction environment (mediapipe; scripts/extract_env.sh); started from the
main one, it hands the same arguments over to `python -m tfislr.video.extract` there
(`tfislr.video.environment`). `--help` needs neither.
"""

import argparse
import importlib.util
import sys
import time

from tfislr import atomic
from tfislr.cli.command import USER_ERROR, command, report
from tfislr.cli.help import HelpFormatter
from tfislr.errors import ConfigError

PROG = "tfislr-extract"
DESCRIPTION = "Video files and folders → a data dir in the competition's layout."


def _in_extraction_env():
    return importlib.util.find_spec("mediapipe") is not None


def parser():
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    parser.add_argument("inputs", nargs="*", help="video files and folders of them")
    parser.add_argument("--out", help="data dir to write (created; merged into if it exists); "
                                      "required unless --check")
    parser.add_argument("--participant-id", type=int, default=0,
                        help="signer id of these videos (default: 0)")
    parser.add_argument("--sign", help="the sign of every input video (default: folder names)")
    parser.add_argument("--mirror", action="store_true",
                        help="flip frames horizontally first (for mirrored recordings)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--check", action="store_true",
                        help="only check that this environment can run Holistic offline")
    return parser


@command(PROG)
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    arguments = parser()
    if not _in_extraction_env():
        if {"-h", "--help"} & set(argv):  # the usage needs no extraction environment
            arguments.parse_args(argv)
        from tfislr.video import environment

        return environment.run_extract(argv).returncode
    args = arguments.parse_args(argv)
    from tfislr.video.extract import check_environment, extract, format_summary, refuse_non_videos

    if args.check:
        print(f"{PROG}: extraction environment OK ({check_environment()}; {sys.prefix})")
        return 0
    if not args.inputs or not args.out:
        arguments.error("give one or more video files or folders and --out DATA_DIR")
    if args.participant_id < 0:
        raise ConfigError(f"--participant-id must be >= 0, got {args.participant_id}")
    atomic.check_writable_dir(args.out)
    # Before any extraction, like tfislr-predict: a file that is no video is one error
    # line naming it, the other inputs are still extracted, and the exit code is then 2.
    inputs, refused = refuse_non_videos(args.inputs)
    for error in refused:
        report(PROG, error)
    if inputs:
        start = time.perf_counter()
        summary = extract(inputs, args.out, participant_id=args.participant_id,
                          sign=args.sign, mirror=args.mirror, progress=not args.quiet)
        print(f"{format_summary(summary, args.out)} in {time.perf_counter() - start:.1f} s")
    return USER_ERROR if refused else 0


if __name__ == "__main__":
    sys.exit(main())
