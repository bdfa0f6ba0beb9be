"""Plot helpers: they draw what they claim on small inputs, headless."""

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from tfislr import landmarks as lm
from tfislr import plots


def _sequence(num_frames=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_frames, lm.NUM_POINTS, 3)).astype(np.float32)
    x[:, lm.LEFT_HAND_POINTS] = 0.0  # a missing hand, as preprocessing writes it
    return x


def test_raw_to_points_selects_and_averages():
    raw = np.random.default_rng(1).normal(size=(3, lm.NUM_RAW_LANDMARKS, 3))
    points = plots.raw_to_points(raw)
    assert points.shape == (3, 100, 3)
    np.testing.assert_allclose(points[:, 0], raw[:, 468], rtol=1e-6)
    nose_rows = list(lm.AVERAGED_GROUPS[-1][1])
    np.testing.assert_allclose(points[:, 99], raw[:, nose_rows].mean(axis=1), rtol=1e-5)


def test_frames_animation_and_gallery_draw_every_part():
    x = _sequence()
    figure = plots.plot_frames(x, num_frames=4)
    assert len(figure.axes) == 4
    # Right hand (21 bones) and arms (11 bones) are drawn; the missing left hand is NaN.
    lines = figure.axes[0].lines
    assert len(lines) == 2 * len(plots.HAND_CONNECTIONS) + len(plots.ARM_CONNECTIONS)
    assert np.isnan(lines[0].get_xydata()).all()
    assert np.isfinite(lines[len(plots.HAND_CONNECTIONS)].get_xydata()).all()
    animation = plots.animate_sign(x)
    assert "<script" in animation.to_jshtml()
    gallery = plots.plot_augmentation_gallery(x, {"flip": -x, "crop": x[2:]})
    assert [ax.get_title().split("\n")[0] for ax in gallery.axes] == ["original", "flip", "crop"]
    with pytest.raises(ValueError, match="0 frames"):
        plots.animate_sign(x[:0])


def test_confusion_tools():
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    predictions = np.array([0, 1, 1, 1, 0, 0, 2])
    matrix = plots.confusion_matrix(labels, predictions, 4)
    assert matrix.sum() == 7 and matrix[2, 0] == 2
    accuracy = plots.per_sign_accuracy(matrix)
    np.testing.assert_allclose(accuracy[:3], [0.5, 1.0, 1 / 3])
    assert np.isnan(accuracy[3])
    pairs = plots.most_confused_pairs(matrix, ["a", "b", "c", "d"], top=5)
    assert pairs == [("c", "a", 2), ("a", "b", 1)]


def test_save_run_plots_writes_pngs(tmp_path):
    pd.DataFrame({"epoch": range(1, 4), "loss": [3.0, 2.0, 1.5],
                  "val_student_accuracy": [0.2, 0.5, 0.7]}).to_csv(tmp_path / "history.csv",
                                                                  index=False)
    (tmp_path / "signs.json").write_text(json.dumps(["a", "b", "c"]))
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"models": {"student": {"soup_accuracy": 0.72, "last_accuracy": 0.7}}}))
    written = plots.save_run_plots(tmp_path, labels=[0, 1, 2], predictions=[0, 2, 2])
    assert [p.name for p in written] == ["training_curves.png", "confusion_matrix.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_a_full_fit_plots_its_loss_and_learning_rate(tmp_path):
    """No validation set: metrics.json holds None accuracies, history no val_ columns."""
    pd.DataFrame({"epoch": range(1, 4), "loss": [3.0, 2.0, 1.5], "student_loss": [3.1, 2.1, 1.4],
                  "learning_rate": [1e-3, 5e-4, 0.0]}).to_csv(tmp_path / "history.csv", index=False)
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"models": {"student": {"soup_accuracy": None, "last_epoch_accuracy": None}}}))
    figure = plots.plot_training_curves(tmp_path)
    loss, right = figure.axes
    assert len(loss.lines) == 2
    assert right.get_title() == "Learning rate (no validation set)"
    np.testing.assert_allclose(right.lines[0].get_ydata(), [1e-3, 5e-4, 0.0])
    # history.csv numbers epochs from 1, as the curves do: drawn as written.
    for line in [*loss.lines, *right.lines]:
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
    written = plots.save_run_plots(tmp_path)
    assert [p.name for p in written] == ["training_curves.png"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attention_maps_grid():
    scores = [np.random.default_rng(0).random((1, 16, 9, 9)) for _ in range(3)]
    figure = plots.plot_attention_maps(scores, heads=2)
    assert len(figure.axes) == 9


@pytest.mark.parametrize("columns", [{"val_student_accuracy": [0.4]}, {"learning_rate": [1e-3]}])
def test_one_epoch_draws_visible_points(tmp_path, columns):
    """A run stopped after its first epoch: each curve is one point, drawn as a marker (a
    line through one point draws nothing, and the axes looked empty)."""
    pd.DataFrame({"epoch": [1], "loss": [3.0], **columns}).to_csv(tmp_path / "history.csv",
                                                                  index=False)
    figure = plots.plot_training_curves(tmp_path)
    lines = [line for ax in figure.axes for line in ax.lines]
    assert len(lines) == 2
    for line in lines:
        assert len(line.get_xdata()) == 1
        assert line.get_marker() not in (None, "None", "", " ") and line.get_markersize() > 0
