"""Per-epoch checkpoints of the three models and their uniform soup (docs/recipe.md §15).

A checkpoint `checkpoints/epoch_XXX.weights.h5` (XXX = 1-based epoch; names from `run_dir`) holds the weights of
the student, the teacher and the distilled model in one Keras weights file, written through
`ModelTriple` (so `ModelTriple(...).load_weights(path)` restores all three). The soup is the
uniform average of the last N checkpoints of every floating-point variable — BatchNorm
moving statistics included, as the original's `uniform_soup` averaged whole state dicts.
Dropout seed-generator counters are not part of Keras weight files and stay as they are.
"""

import pathlib

import keras
import numpy as np

from tfislr import atomic
from tfislr.config import MODEL_NAMES
from tfislr.runs.run_dir import checkpoint_path, list_checkpoints  # noqa: F401  (the names)


class ModelTriple(keras.Model):
    """A weights-only container of the three models (student, teacher, distilled).

    Not a model to call: it gives the three models one Keras weights file, with each
    model's variables under its own name.
    """

    def __init__(self, student, teacher, distilled, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.distilled = distilled
        self.built = True

    @property
    def layers(self):
        # Keras' weight files walk `layers` before the attributes and would file the
        # student and teacher under class-derived names; without it each model's weights
        # sit under "student/", "teacher/", "distilled/".
        return []

    def call(self, inputs):  # pragma: no cover - a container, never called
        raise NotImplementedError("ModelTriple only stores weights")

    def named_models(self):
        # A method, not a property: Keras' weight saving walks properties too.
        return {name: getattr(self, name) for name in MODEL_NAMES}


def save_checkpoint(triple, directory, epoch):
    """Writes the three models' weights for the 1-based `epoch` atomically; returns the path."""
    path = checkpoint_path(directory, epoch)
    with atomic.atomic_path(path) as tmp:  # a killed run never leaves half a checkpoint
        triple.save_weights(tmp)
    return path


def _is_float(variable):
    return "float" in str(variable.dtype)


def uniform_soup(triple, paths):
    """Loads the uniform average of the checkpoints `paths` into `triple`'s models.

    Every floating-point variable (weights and BatchNorm statistics) becomes the mean of
    its saved values (accumulated in float64).

    Returns:
        {model name: list of the soup values (np.ndarray) of the model's float variables}.
    """
    paths = [pathlib.Path(p) for p in paths]
    if not paths:
        raise ValueError("uniform_soup needs at least one checkpoint")
    variables = {
        name: [v for v in model.variables if _is_float(v)]
        for name, model in triple.named_models().items()
    }
    sums = {name: [np.zeros(v.shape, np.float64) for v in vs] for name, vs in variables.items()}
    for path in paths:
        triple.load_weights(path)
        for name, vs in variables.items():
            for total, v in zip(sums[name], vs):
                total += np.asarray(v.numpy(), np.float64)
    soup = {}
    for name, vs in variables.items():
        soup[name] = []
        for total, v in zip(sums[name], vs):
            value = (total / len(paths)).astype(v.dtype)
            v.assign(value)
            soup[name].append(value)
    return soup


def soup_last_checkpoints(triple, directory, last_n):
    """Soups the newest `last_n` checkpoints of `directory` into `triple`; returns their epochs."""
    found = list_checkpoints(directory)
    if not found:
        raise ValueError(f"no checkpoints epoch_XXX.weights.h5 in {directory}")
    chosen = found[-last_n:]
    uniform_soup(triple, [path for _, path in chosen])
    return [epoch for epoch, _ in chosen]
