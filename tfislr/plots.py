"""Matplotlib views of signs, augmentations, training runs and attention.

Used by `notebooks/inspect.ipynb` and by `train.py` (`save_run_plots`). Every
function returns a `matplotlib.figure.Figure` (or an animation) and never calls
`plt.show()`, so it works headless and in notebooks alike.
"""

import matplotlib.animation
import matplotlib.pyplot as plt
import numpy as np

from tfislr import landmarks as lm
from tfislr.runs.run_dir import RunDir

# MediaPipe hand skeleton (landmark k of one hand, 0 = wrist).
HAND_CONNECTIONS = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10),
    (10, 11), (11, 12), (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (17, 18),
    (18, 19), (19, 20), (0, 17),
)
# Pose landmarks 11..22 (shoulders, elbows, wrists, fingers), as pose ids.
ARM_CONNECTIONS = (
    (11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (15, 17), (15, 19), (15, 21),
    (16, 18), (16, 20), (16, 22),
)
_FIRST_ARM_POSE_ID = 11
_COLORS = {"left_hand": "tab:red", "right_hand": "tab:blue", "face": "tab:gray",
           "lips": "tab:pink", "arms": "tab:green", "cheeks_eyes_nose": "tab:purple"}


def _model_point_layout():
    """Line segments and scatter groups, in the 100 model-point indexing."""
    lines = []
    for hand_points, color in ((lm.LEFT_HAND_POINTS, _COLORS["left_hand"]),
                               (lm.RIGHT_HAND_POINTS, _COLORS["right_hand"])):
        lines += [((hand_points[a], hand_points[b]), color) for a, b in HAND_CONNECTIONS]
    arm0 = lm.ARM_POINTS[0]
    lines += [((arm0 + a - _FIRST_ARM_POSE_ID, arm0 + b - _FIRST_ARM_POSE_ID), _COLORS["arms"])
              for a, b in ARM_CONNECTIONS]
    groups = {
        "face": lm.FACE_SILHOUETTE_POINTS,
        "lips": lm.LIPS_POINTS,
        # Cheeks (the last kept points) and the 5 averaged eye/eyebrow/nose points.
        "cheeks_eyes_nose": tuple(
            range(lm.NUM_KEPT_POINTS - len(lm.CHEEK_ROWS), lm.NUM_POINTS)
        ),
    }
    return lines, groups


def raw_to_points(frames):
    """Picks the kept rows of raw frames `[T, 543, 3]` → `[T, 100, 3]` for drawing.

    Averaged points are plain NaN-propagating means, as in preprocessing; no
    normalisation, so the picture stays in MediaPipe image coordinates.
    """
    frames = np.asarray(frames, dtype=np.float32)
    kept = frames[:, list(lm.KEPT_ROWS)]
    averaged = [frames[:, list(rows)].mean(axis=1) for _, rows in lm.AVERAGED_GROUPS]
    return np.concatenate([kept, np.stack(averaged, axis=1)], axis=1)


def _draw_points(ax, points, missing_as_zero):
    """Draws one frame of model points `[100, 3]` on `ax`."""
    points = np.array(points[:, :2], dtype=np.float32)
    if missing_as_zero:  # preprocessed data: exact zeros mean "missing"
        points[np.all(points == 0, axis=-1)] = np.nan
    lines, groups = _model_point_layout()
    artists = []
    for (a, b), color in lines:
        artists += ax.plot(points[[a, b], 0], points[[a, b], 1], color=color, lw=1.5)
    for name, idx in groups.items():
        artists.append(ax.scatter(points[list(idx), 0], points[list(idx), 1], s=6,
                                  color=_COLORS[name]))
    return artists


def _axis_limits(sequence, missing_as_zero):
    xy = np.array(sequence[..., :2], dtype=np.float32).reshape(-1, 2)
    if missing_as_zero:
        xy = xy[~np.all(xy == 0, axis=-1)]
    xy = xy[np.isfinite(xy).all(axis=-1)]
    if len(xy) == 0:
        return (-1, 1), (-1, 1)
    low, high = xy.min(axis=0), xy.max(axis=0)
    pad = 0.05 * np.maximum(high - low, 1e-3)
    return (low[0] - pad[0], high[0] + pad[0]), (high[1] + pad[1], low[1] - pad[1])


def plot_frames(sequence, num_frames=6, title=None, missing_as_zero=None):
    """A strip of evenly spaced frames of a `[T, 100, 3]` sequence (or raw `[T, 543, 3]`)."""
    sequence = np.asarray(sequence)
    if sequence.shape[1] == lm.NUM_RAW_LANDMARKS:
        sequence, missing_as_zero = raw_to_points(sequence), False
    elif missing_as_zero is None:
        missing_as_zero = True
    num_frames = max(1, min(num_frames, len(sequence)))
    picks = np.linspace(0, len(sequence) - 1, num_frames).round().astype(int) if len(sequence) else []
    fig, axes = plt.subplots(1, num_frames, figsize=(2.2 * num_frames, 2.6), squeeze=False)
    xlim, ylim = _axis_limits(sequence, missing_as_zero)
    for ax, t in zip(axes[0], picks):
        _draw_points(ax, sequence[t], missing_as_zero)
        ax.set(xlim=xlim, ylim=ylim, xticks=[], yticks=[], title=f"t={t}")
        ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def animate_sign(sequence, interval_ms=80, title=None, missing_as_zero=None):
    """An animation of a sign: raw `[T, 543, 3]` frames or model points `[T, 100, 3]`.

    In a notebook: `IPython.display.HTML(animate_sign(x).to_jshtml())`.
    """
    sequence = np.asarray(sequence)
    if sequence.shape[1] == lm.NUM_RAW_LANDMARKS:
        sequence, missing_as_zero = raw_to_points(sequence), False
    elif missing_as_zero is None:
        missing_as_zero = True
    if len(sequence) == 0:
        raise ValueError("cannot animate a sequence with 0 frames")
    fig, ax = plt.subplots(figsize=(3.5, 3.5))
    xlim, ylim = _axis_limits(sequence, missing_as_zero)

    def draw(t):
        ax.clear()
        ax.set(xlim=xlim, ylim=ylim, xticks=[], yticks=[])
        ax.set_aspect("equal")
        ax.set_title(f"{title + ' · ' if title else ''}frame {t + 1}/{len(sequence)}")
        return _draw_points(ax, sequence[t], missing_as_zero)

    animation = matplotlib.animation.FuncAnimation(
        fig, draw, frames=len(sequence), interval=interval_ms, blit=False)
    plt.close(fig)
    return animation


def plot_augmentation_gallery(sequence, augmented, frame=None):
    """One frame of `sequence` and of each augmented version.

    Args:
        sequence: `[T, 100, 3]` preprocessed sequence.
        augmented: dict name → augmented `[T', 100, 3]`.
        frame: frame index shown (relative position kept for cropped versions).
    """
    items = [("original", np.asarray(sequence))] + [(k, np.asarray(v)) for k, v in augmented.items()]
    fig, axes = plt.subplots(1, len(items), figsize=(2.4 * len(items), 2.8), squeeze=False)
    all_points = np.concatenate([v for _, v in items], axis=0)
    xlim, ylim = _axis_limits(all_points, True)
    position = 0.5 if frame is None else frame / max(1, len(sequence) - 1)
    for ax, (name, x) in zip(axes[0], items):
        t = int(round(position * (len(x) - 1)))
        _draw_points(ax, x[t], True)
        ax.set(xlim=xlim, ylim=ylim, xticks=[], yticks=[], title=f"{name}\nT={len(x)}")
        ax.set_aspect("equal")
    fig.tight_layout()
    return fig


def read_history(run_dir):
    """The run's `history.csv` as a DataFrame, one row per epoch."""
    return RunDir(run_dir).read_history()


def plot_training_curves(run_dir):
    """Training loss per epoch, and validation accuracy of the three models when there is any.

    Reads `history.csv` and, when present, draws the soup accuracies of `metrics.json` as
    horizontal markers. A full fit has no validation set: its right panel is the learning
    rate instead, so the submission run's curves are plotted too.
    """
    run = RunDir(run_dir)
    history = run.read_history()
    epochs = history["epoch"].to_numpy() if "epoch" in history else np.arange(1, len(history) + 1)
    loss_columns = [c for c in history.columns if c.endswith("loss") and not c.startswith("val_")]
    acc_columns = [c for c in history.columns if c.startswith("val_") and "acc" in c]
    soups = [
        (model_name, values["soup_accuracy"])
        for model_name, values in sorted(((run.read_metrics() or {}).get("models") or {}).items())
        if values.get("soup_accuracy") is not None  # None: a full fit measures no accuracy
    ]
    # A line through one point draws nothing: after one epoch each value is a marker.
    style = {"marker": "o"} if len(epochs) == 1 else {}
    fig, (ax_loss, ax_right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for column in loss_columns:
        ax_loss.plot(epochs, history[column], label=column, **style)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Loss")
    if acc_columns or soups:
        for column in acc_columns:
            ax_right.plot(epochs, history[column], label=column, **style)
        for i, (model_name, accuracy) in enumerate(soups):
            ax_right.axhline(accuracy, ls="--", lw=1, color=f"C{i + 3}", label=f"{model_name} soup")
        ax_right.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy")
    elif "learning_rate" in history:
        ax_right.plot(epochs, history["learning_rate"], label="learning_rate", **style)
        ax_right.set(xlabel="epoch", ylabel="learning rate",
                     title="Learning rate (no validation set)")
    else:
        ax_right.set_axis_off()
    for ax in (ax_loss, ax_right):
        if ax.lines:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_matrix(labels, predictions, num_classes):
    """Counts `[num_classes, num_classes]`: row = true sign, column = predicted sign."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def per_sign_accuracy(matrix):
    """Accuracy per true sign (NaN for signs absent from the labels)."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.maximum(totals, 1), np.nan)


def most_confused_pairs(matrix, signs, top=10):
    """The `top` (true, predicted, count) off-diagonal pairs, most frequent first."""
    off_diagonal = matrix.copy()
    np.fill_diagonal(off_diagonal, 0)
    order = np.argsort(off_diagonal, axis=None)[::-1][:top]
    pairs = []
    for flat in order:
        true, predicted = np.unravel_index(flat, matrix.shape)
        if off_diagonal[true, predicted] == 0:
            break
        pairs.append((signs[true], signs[predicted], int(off_diagonal[true, predicted])))
    return pairs


def plot_confusion_matrix(labels, predictions, signs, max_signs=40):
    """Row-normalised confusion matrix; with many signs only the `max_signs` worst are shown."""
    matrix = confusion_matrix(labels, predictions, len(signs))
    accuracy = per_sign_accuracy(matrix)
    present = np.flatnonzero(matrix.sum(axis=1) > 0)
    if len(present) > max_signs:
        present = present[np.argsort(accuracy[present])[:max_signs]]
    sub = matrix[np.ix_(present, present)].astype(np.float64)
    sub /= np.maximum(sub.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.28 * len(present) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(sub, cmap="Blues", vmin=0, vmax=1)
    names = [signs[i] for i in present]
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true",
           title=f"Confusion matrix (accuracy {np.trace(matrix) / max(matrix.sum(), 1):.3f})")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def plot_per_sign_accuracy(labels, predictions, signs, top=20):
    """Bar chart of the `top` worst signs by accuracy."""
    matrix = confusion_matrix(labels, predictions, len(signs))
    accuracy = per_sign_accuracy(matrix)
    present = np.flatnonzero(~np.isnan(accuracy))
    worst = present[np.argsort(accuracy[present])[:top]]
    fig, ax = plt.subplots(figsize=(8, 0.25 * len(worst) + 1.2))
    ax.barh([signs[i] for i in worst], accuracy[worst], color="tab:orange")
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="accuracy", title=f"{len(worst)} least accurate signs")
    fig.tight_layout()
    return fig


def plot_attention_maps(scores, heads=4, title=None):
    """Attention probabilities of each transformer layer for one sequence.

    Args:
        scores: list (one per layer) of `[heads, T, T]` or `[1, heads, T, T]` arrays.
        heads: how many heads to show per layer (the mean over all heads is shown first).
    """
    layers = [np.asarray(s)[0] if np.asarray(s).ndim == 4 else np.asarray(s) for s in scores]
    columns = 1 + min(heads, layers[0].shape[0])
    fig, axes = plt.subplots(len(layers), columns, figsize=(2.2 * columns, 2.2 * len(layers)),
                             squeeze=False)
    for row, layer_scores in enumerate(layers):
        panels = [("mean", layer_scores.mean(axis=0))] + [
            (f"head {h}", layer_scores[h]) for h in range(columns - 1)]
        for ax, (name, panel) in zip(axes[row], panels):
            ax.imshow(panel, cmap="viridis", vmin=0)
            ax.set(xticks=[], yticks=[], title=f"layer {row + 1} · {name}")
            ax.title.set_fontsize(8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_run_plots(run_dir, labels=None, predictions=None, signs=None):
    """Writes `plots/training_curves.png` and, given predictions, `plots/confusion_matrix.png`.

    Args:
        run_dir: the training run directory (holds `history.csv`).
        labels, predictions: int arrays of validation labels and predicted labels.
        signs: sign names by label; read from `signs.json` in the run dir when None.
    Returns:
        The list of written paths.
    """
    run = RunDir(run_dir)
    out = run.plots_dir
    out.mkdir(parents=True, exist_ok=True)
    written = []
    figure = plot_training_curves(run_dir)
    written.append(out / "training_curves.png")
    figure.savefig(written[-1], dpi=110)
    plt.close(figure)
    if labels is not None and predictions is not None:
        if signs is None:
            signs = run.read_signs()
        figure = plot_confusion_matrix(labels, predictions, signs)
        written.append(out / "confusion_matrix.png")
        figure.savefig(written[-1], dpi=110)
        plt.close(figure)
    return written
