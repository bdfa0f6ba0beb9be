"""A recognized timeline against the true one: word error rate and boundary error.

* **Word error rate** (WER), as in speech and continuous sign language recognition: the
  fewest substitutions S, deletions D and insertions I (Levenshtein) that turn the true
  sign sequence into the recognized one, over the number of true signs N:
  `(S + D + I) / N`. It can exceed 1 (many insertions). Over several streams the edits and
  the true signs are summed before dividing.
* **Boundary error**: for each true sign matched to a correct recognized sign by that
  alignment, `|start - true start|` and `|end - true end|` in frames; reported as the mean
  of each (and of both) over the matches.

A timeline here is a list of `(sign, start_frame, end_frame)`.
"""

import numpy as np


def align(reference, hypothesis):
    """Levenshtein alignment of two sequences.

    Returns `(substitutions, deletions, insertions, matches)`, `matches` the `(i, j)`
    index pairs of equal items aligned to each other. Among alignments with the fewest
    edits, one with the most matches is returned.
    """
    n, m = len(reference), len(hypothesis)
    # cost[i][j]: (edits, -matches) to align reference[:i] with hypothesis[:j].
    cost = np.zeros((n + 1, m + 1, 2), np.int64)
    cost[:, 0, 0] = np.arange(n + 1)
    cost[0, :, 0] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            same = reference[i - 1] == hypothesis[j - 1]
            diagonal = cost[i - 1, j - 1] + (0 if same else 1, -1 if same else 0)
            options = (tuple(diagonal), tuple(cost[i - 1, j] + (1, 0)),
                       tuple(cost[i, j - 1] + (1, 0)))
            cost[i, j] = min(options)
    substitutions = deletions = insertions = 0
    matches = []
    i, j = n, m
    while i or j:
        if i and j:
            same = reference[i - 1] == hypothesis[j - 1]
            diagonal = cost[i - 1, j - 1] + (0 if same else 1, -1 if same else 0)
            if tuple(diagonal) == tuple(cost[i, j]):
                if same:
                    matches.append((i - 1, j - 1))
                else:
                    substitutions += 1
                i, j = i - 1, j - 1
                continue
        if i and tuple(cost[i - 1, j] + (1, 0)) == tuple(cost[i, j]):
            deletions += 1
            i -= 1
        else:
            insertions += 1
            j -= 1
    return substitutions, deletions, insertions, matches[::-1]


def score_streams(pairs):
    """`pairs`: `[(true timeline, recognized timeline)]` → a dict of the scores.

    Keys: `wer`, `substitutions`, `deletions`, `insertions`, `true_signs`,
    `recognized_signs`, `matched`, `start_error_frames`, `end_error_frames`,
    `boundary_error_frames` (means over the matches; None without a match).
    """
    totals = dict(substitutions=0, deletions=0, insertions=0, true_signs=0,
                  recognized_signs=0, matched=0)
    start_errors, end_errors = [], []
    for truth, recognized in pairs:
        s, d, i, matches = align([t[0] for t in truth], [r[0] for r in recognized])
        totals["substitutions"] += s
        totals["deletions"] += d
        totals["insertions"] += i
        totals["true_signs"] += len(truth)
        totals["recognized_signs"] += len(recognized)
        totals["matched"] += len(matches)
        for a, b in matches:
            start_errors.append(abs(recognized[b][1] - truth[a][1]))
            end_errors.append(abs(recognized[b][2] - truth[a][2]))
    edits = totals["substitutions"] + totals["deletions"] + totals["insertions"]
    mean = (lambda values: float(np.mean(values)) if values else None)
    return {
        "wer": edits / max(totals["true_signs"], 1),
        **totals,
        "start_error_frames": mean(start_errors),
        "end_error_frames": mean(end_errors),
        "boundary_error_frames": mean(start_errors + end_errors),
    }
