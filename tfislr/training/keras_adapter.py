"""Every place where tfislr overrides a private Keras hook or imports `keras.src`, with why.

The recipe (`tfislr.training.mean_teacher`, `optimizers`, `callbacks`) is written against
Keras' public API. What it needs beyond that lives here, each piece a thin override that
hands over to a plain method of the recipe:

- `TrainerHooks` (a `keras.Model`): `_maybe_symbolic_build` (skip Keras' build from a
  batch, which MultiWorkerMirroredStrategy refuses for dict batches), `make_train_function`
  (one traced step per step mode, picked on the host) and `_make_function` (a `tf.function`
  per model, so that TF does not count the traces of every model's steps together);
- `PreReducedGradients` (an optimizer mixin): `_all_reduce_sum_gradients`, so that
  gradients the train step already summed over replicas (and clipped) are not summed again
  (Keras 3 dropped `experimental_aggregate_gradients=False`);
- `BackupHooks` (a `keras.callbacks.BackupAndRestore`): `_save_model` / `_load_model`,
  the points where Keras' backup writes and reads, to write atomically and with the
  random states;
- `random_states`: the seed generators of a model, found through `Layer._flatten_layers`
  and `keras.src.backend.common.global_state` (Keras saves neither with the weights).

These hooks were read and tested against the Keras versions in `KERAS_CHECKED`;
`tests/training/test_keras_adapter.py` fails outside them, and `pyproject.toml` admits only them.
"""

import keras

# The Keras versions whose private hooks above were read and tested (requirements.txt).
KERAS_CHECKED = ("3.15.1",)


def check_keras_version(version=None):
    """Raises ImportError naming `version` (default: the installed Keras) when it is not one
    of `KERAS_CHECKED`, the versions whose private hooks this module was checked against."""
    version = keras.__version__ if version is None else version
    if version not in KERAS_CHECKED:
        raise ImportError(
            f"keras {version} is not a version tfislr's Keras hooks were checked against "
            f"({', '.join(KERAS_CHECKED)}; tfislr/training/keras_adapter.py): install "
            "keras==" + KERAS_CHECKED[-1]
        )


def _require(owner, hook):
    if not hasattr(owner, hook):
        raise ImportError(
            f"tfislr needs the Keras hook `{owner.__name__}.{hook}`; keras {keras.__version__} "
            f"does not have it (checked: {', '.join(KERAS_CHECKED)}). Pin keras to "
            "requirements.txt."
        )


class TrainerHooks(keras.Model):
    """A `keras.Model` whose train function runs one of a few traced steps, picked on the host.

    The subclass provides plain methods:
        `fully_built()` -> bool: every model and optimizer is built (no build from a batch);
        `step_modes()` -> the hashable step modes, e.g. `(False, True)`;
        `step_for_mode(mode)` -> the step function `(data) -> logs` of that mode;
        `current_step_mode()` -> the mode of the next call (read on the host).
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras' generic build pulls a batch and `strategy.reduce`s it to build shapes,
        # which MultiWorkerMirroredStrategy rejects for nested (dict) batches.
        if self.fully_built():
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def make_train_function(self, force=False):
        """One function per step mode, each traced (and XLA-compiled) once; the mode of each
        call is read on the host (a `tf.cond` on a variable inside the step made XLA treat
        variables as compile-time constants: one compilation per step)."""
        if self.train_function is not None and not force:
            return self.train_function
        _require(keras.Model, "_make_function")
        steps = {mode: self._make_function(self.step_for_mode(mode)) for mode in self.step_modes()}

        def train_function(iterator):
            return steps[self.current_step_mode()](iterator)

        self.train_function = train_function
        return train_function

    def _make_function(self, step_function):
        """Keras' function of one step on an iterator, as a `tf.function` of this model alone.

        Every Keras model wraps its steps in closures of the same Python code, and TF counts
        the traces of all `tf.function`s of one code object together (its "triggered
        tf.function retracing" warning): the first trace of each new model's functions,
        e.g. of every fold of a cross-validation, adds up to what looks like retracing of
        one function, although each function is traced once. Here the traced callable is
        a `functools.partial` of this model's step, which TF counts on its own. The step is
        Keras' (its strategy, reduction and `jit_compile`); the iterator is read in the
        graph as Keras does with one step per execution.
        """
        import functools

        import tensorflow as tf

        keras_function = super()._make_function(step_function)
        if self.run_eagerly or self.steps_per_execution != 1:
            return keras_function
        on_iterator = tf.function(
            functools.partial(_step_on_iterator, step=keras_function),
            reduce_retracing=True, autograph=False,
        )

        def function(iterator):
            if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
                return on_iterator(iterator)
            return keras_function(iterator)

        return function


def _step_on_iterator(iterator, step):
    # `step` (Keras' function of the model) runs the steps of a list of batches: one here.
    return step([iterator.get_next()])


class PreReducedGradients:
    """Optimizer mixin: the optimizer receives gradients already summed over replicas (and
    clipped) by the train step, and skips its own cross-replica sum."""

    gradients_pre_reduced = True

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)

    @staticmethod
    def check_hook():
        """ImportError when Keras' optimizer lacks the hook (gradients could be summed twice)."""
        _require(keras.optimizers.Optimizer, "_all_reduce_sum_gradients")


class BackupHooks(keras.callbacks.BackupAndRestore):
    """Keras' `BackupAndRestore` whose save and load are the subclass's plain methods.

    The subclass provides `save_backup(epoch, batch)` and
    `load_backup(keras_weights_path) -> epoch to resume at (0: start afresh)`.
    """

    def _save_model(self):
        self.save_backup(self._current_epoch, self._last_batch_seen)

    def _load_model(self):
        epoch = self.load_backup(self._weights_path)
        if epoch:
            self.model._initial_epoch = epoch


def random_states(model):
    """Every random state of `model`'s steps, in a fixed order: the `keras.random.SeedGenerator`
    of each layer (dropout masks), recursively, then Keras' global generator if one exists.

    Keras saves a layer with `save_own_variables`, which holds its trainable and
    non-trainable variables but not its seed generators' states; a backup without them
    resumes with the dropout masks of a fresh run. Random draws of the step itself are
    stateless, seeded from saved variables (the step counter), so these are all there is.
    """
    from keras.src.backend.common import global_state  # no public accessor in Keras 3

    generators, seen = [], set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for generator in getattr(layer, "_seed_generators", ()):
            if id(generator) not in seen:
                seen.add(id(generator))
                generators.append(generator)
    global_generator = global_state.get_global_attribute("global_seed_generator")
    if global_generator is not None and id(global_generator) not in seen:
        generators.append(global_generator)
    return [generator.state for generator in generators]
