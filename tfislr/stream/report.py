"""The timeline of recognized signs as a table line, JSON or CSV (`tfislr-stream`'s outputs).

One sign a line: its frames (inclusive, 0-based positions in the stream), its seconds, and
the top k signs with their probabilities, best first. The CSV has the columns
`start_frame, end_frame, start_seconds, end_seconds, sign, probability` and, for k > 1,
`sign_2, probability_2, ...`.
"""

import csv
import io
import json

from tfislr import atomic


def format_line(sign):
    """`    12-40         0.40-1.33 s    hello 0.912  bye 0.051` for a `RecognizedSign`."""
    best = "  ".join(f"{p['sign']} {p['probability']:.3f}" for p in sign.top_k)
    frames = f"{sign.start_frame:>7}-{sign.end_frame:<7}"
    seconds = f"{sign.start_seconds:.2f}-{sign.end_seconds:.2f} s"
    return f"{frames} {seconds:>17}    {best}"


def format_table(signs):
    """The header line, then `format_line` of each sign."""
    header = f"{'frames':>13} {'seconds':>18}    signs (probability)"
    return "\n".join([header] + [format_line(sign) for sign in signs])


def to_records(signs):
    """A list of `{start_frame, end_frame, start_seconds, end_seconds, top_k: [{sign,
    label, probability}]}` (what `to_json` encodes)."""
    keys = ("start_frame", "end_frame", "start_seconds", "end_seconds", "top_k")
    return [{key: getattr(sign, key) for key in keys} for sign in signs]


def to_json(signs):
    """`to_records(signs)` as indented JSON text."""
    return json.dumps(to_records(signs), indent=2)


def csv_text(signs, top_k):
    columns = ["start_frame", "end_frame", "start_seconds", "end_seconds", "sign", "probability"]
    for rank in range(2, top_k + 1):
        columns += [f"sign_{rank}", f"probability_{rank}"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for sign in signs:
        row = [sign.start_frame, sign.end_frame, f"{sign.start_seconds:.3f}",
               f"{sign.end_seconds:.3f}"]
        for entry in sign.top_k:
            row += [entry["sign"], f"{entry['probability']:.6f}"]
        row += [""] * (len(columns) - len(row))
        writer.writerow(row)
    return buffer.getvalue()


def write_csv(path, signs, top_k):
    """Writes the CSV atomically (a killed run leaves no half file)."""
    atomic.write_text(path, csv_text(signs, top_k))
