"""Mean teacher + knowledge distillation in one `keras.Model` with a custom train step.

Three networks train together (docs/recipe.md §11–§12):

1. the big **student**, trained by its own AdamW on
   CE_ousm(student, y) + w(step) · C(student, teacher);
2. the **teacher**: same architecture, separately initialised, never back-propagated;
   after every step θ_T ← α θ_T + (1 − α) θ_S with α = min(1 − 1/(step + 1), 0.97)
   (trainable variables only; its BatchNorm statistics come from its own forward
   passes, in training mode, on its own augmented view);
3. the small **distilled** model (the one exported), trained by its own AdamW on
   CE_ousm(distilled, y) + w(step) · C(distilled, teacher) — it learns from the teacher.

CE_ousm is the smoothed soft-target cross-entropy with the k largest per-sample losses of
each group of `batch_group_size` clips dropped (the original's per-GPU batch); C is the
squared difference of the softmaxes; w ramps up as 5·exp(−5(1 − s/R)²) over the first
25 % of the steps. With a decreasing probability a batch
is mixed (manifold mixup), group by group: one per-sample λ ~ Beta(0.4, 0.4) and one
permutation within the group, shared by the three models, each of which mixes before its own
randomly drawn transformer layer. Groups make the step the same on any replica count.
From the first epoch after half-way the distilled model trains with `training=False` (no
dropout, frozen BatchNorm statistics), as the original's code did (a config switch).

Step state (step counter, epoch) lives in variables, so a step is a pure function of
the variables and the batch, the graph is traced once per distilled-model mode (the
mode is picked on the host, see `keras_adapter.TrainerHooks`), and `BackupAndRestore` restores
it. Distribution: every loss is a per-replica mean scaled by 1 / replicas before the
gradient; gradients are summed across replicas once, clipped by their global norm, then
applied by optimizers that do not sum again (tfislr.training.optimizers). The teacher's
EMA update runs in cross-replica context through `merge_call` +
`extended.update`, the pattern Keras optimizers use for their own slots. The
replica-local part (`replica_gradients`: mixup draw, three forwards, two backwards) is
kept apart from these cross-replica updates so that, with `jit_compile` on several
replicas, each replica XLA-compiles it on its own device (`step_for_mode`). Every
override of a private Keras hook is in `tfislr.training.keras_adapter`.
"""

import dataclasses
import functools
import typing

import keras
import tensorflow as tf
from keras import ops

from tfislr import landmarks as lm
from tfislr import timeline
from tfislr.augment_batch import augment_views
from tfislr.config import MODEL_NAMES
from tfislr.model import xla
from tfislr.model.ghost_batch_norm import set_virtual_batch_size
from tfislr.training import keras_adapter, losses
from tfislr.training import schedules
from tfislr.training.mixup import draw_mixup
from tfislr.training.optimizers import is_pre_reduced


def _logs(values):
    """Step logs in the shape Keras can reduce under the strategy in scope.

    Keras reduces multi-worker step outputs with `strategy.reduce("MEAN", v, axis=0)`,
    which fails on scalars (tensorflow/tensorflow#72388); a `[1]` vector reduces to the
    same scalar (the metric results are already identical on every replica).
    """
    strategy = tf.distribute.get_strategy()
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and getattr(
        strategy.extended, "_in_multi_worker_mode", lambda: False
    )()
    if not multi_worker:
        return values
    return {key: ops.reshape(value, (1,)) for key, value in values.items()}


def _global_result(metric):
    """`metric.result()` over every replica's clips so far (a Mean-like metric).

    Inside a replica, `result()` reads only this replica's total and count, and Keras
    averages the replicas' step logs: with unequal per-replica batches (the last global
    batch of a validation set) that weighs clips unequally. Summing total and count across
    replicas first gives the one-device value.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return metric.result()
    # An all-reduced tensor names its destination by its device; a variable read in a graph
    # without a device scope has none, which MultiWorkerMirroredStrategy refuses
    # ("destinations can not be empty"): read on the variable's own device.
    with tf.device(metric.total.value.device):
        values = [tf.identity(metric.total.value), tf.identity(metric.count.value)]
    total, count = context.all_reduce(tf.distribute.ReduceOp.SUM, values)
    return tf.math.divide_no_nan(total, count)


def _dense_gradient(gradient):
    # Embedding lookups give IndexedSlices; the tables are tiny, and dense tensors make
    # the all-reduce and the global norm straightforward.
    if isinstance(gradient, tf.IndexedSlices):
        return tf.convert_to_tensor(gradient)
    return gradient


@dataclasses.dataclass(frozen=True)
class MeanTeacherConfig:
    """Every hyperparameter of the mean-teacher step, in one frozen object.

    The recipe's values and their meaning live in `tfislr.config.TrainConfig` (the fields of
    the same names, copied by `from_config`); the three others come from the run:

    Args:
        num_classes: C, the number of signs.
        total_steps: optimizer steps of the whole run (schedules, ramp-up).
        num_mix_layers: mixup layer indices are drawn in [0, num_mix_layers)
            (the transformer layers of the classifier).

    Raises:
        ValueError: for a non-positive count or a negative `ousm_k`.
    """

    num_classes: int
    total_steps: int
    num_mix_layers: int
    epochs: int
    label_smoothing: float
    ousm_k: int
    batch_group_size: typing.Optional[int]
    consistency_weight: float
    rampup_prop: float
    ema_decay: float
    mix_proba: float
    mix_alpha: float
    mix_end_fraction: float
    distilled_inference_mode_second_half: bool
    max_grad_norm: float
    seed: int

    def __post_init__(self):
        for name in ("num_classes", "total_steps", "num_mix_layers", "epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.ousm_k < 0:
            raise ValueError(f"ousm_k must be >= 0, got {self.ousm_k}")

    @classmethod
    def from_config(cls, config, num_classes, total_steps):
        """The step's settings of a `tfislr.config.Config` for a run of `total_steps` steps."""
        run_fields = {"num_classes", "total_steps", "num_mix_layers"}
        train = {
            field.name: getattr(config.train, field.name)
            for field in dataclasses.fields(cls)
            if field.name not in run_fields
        }
        return cls(
            num_classes=int(num_classes),
            total_steps=int(total_steps),
            num_mix_layers=int(config.model.transfo_layers),
            **train,
        )

    @property
    def rampup_length(self):
        """R: the step at which the consistency weight reaches its maximum."""
        return schedules.rampup_steps(self.total_steps, self.rampup_prop)

    @property
    def distilled_switch_epoch(self):
        """0-based epoch from which the distilled model trains in inference mode."""
        return timeline.distilled_inference_start(self.epochs)


class MeanTeacherDistiller(keras_adapter.TrainerHooks):
    """Trains a student, its EMA teacher and a distilled model together (module docstring).

    Args:
        student, teacher, distilled: built classifiers called as
            `model(inputs, training=..., mixup=None | {"lambda", "permutation", "layer"})`
            → float32 logits `[B, num_classes]`; student and teacher share an architecture.
        config: a `MeanTeacherConfig` (every hyperparameter of the step).
        view_augmenter: None, or a callable making the three views from a raw training
            batch on each replica, before the models (`augment.device: accelerator`:
            `tfislr.augment_batch.augment_views`); then `fit` takes that raw batch.

    Data: `fit` takes `({"student": inputs, "teacher": inputs, "distilled": inputs}, labels)`
    (three independently augmented views, `inputs = {"landmarks", "padding_mask"}`);
    `evaluate` takes `(inputs, labels)` and reports the accuracy of the three models.
    The distiller is saved and restored by its weights (`save_weights`/`load_weights`);
    it has no `get_config`.
    """

    def __init__(self, student, teacher, distilled, config, view_augmenter=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(config, MeanTeacherConfig):
            raise ValueError(f"config must be a MeanTeacherConfig, got {type(config).__name__}")
        self.student = student
        self.teacher = teacher
        self.distilled = distilled
        self.config = config
        self.view_augmenter = view_augmenter
        # Host-side cache of `distilled_inference_mode()` for the epoch `fit` is in.
        self._epoch_distilled_mode = None
        self.replica_jit_compile = False  # set by `compile`

        self._ema_pairs()  # fails early when teacher and student differ

        # "only_first_replica": updated once per step whatever the replica count, like
        # the optimizers' iteration counters.
        self.step_counter = self.add_weight(
            shape=(), dtype="int64", initializer="zeros", trainable=False,
            aggregation="only_first_replica", name="step_counter",
        )
        self.epoch = self.add_weight(
            shape=(), dtype="int64", initializer="zeros", trainable=False,
            aggregation="only_first_replica", name="epoch",
        )

        self.train_trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "student_loss", "distilled_loss", "consistency_loss")
        }
        self.eval_loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_trackers = {
            name: keras.metrics.SparseCategoricalAccuracy(name=f"{name}_accuracy")
            for name in MODEL_NAMES
        }
        self.built = True

    # ------------------------------------------------------------------ setup
    def _ema_pairs(self):
        # A method, not an attribute: a list of variables set on a Keras layer would be
        # tracked as the distiller's own variables and saved twice.
        student_vars = self.student.trainable_variables
        teacher_vars = self.teacher.trainable_variables
        if len(student_vars) != len(teacher_vars):
            raise ValueError(
                f"teacher and student must share an architecture: {len(teacher_vars)} vs "
                f"{len(student_vars)} trainable variables"
            )
        for t, s in zip(teacher_vars, student_vars):
            if tuple(t.shape) != tuple(s.shape):
                raise ValueError(
                    f"teacher variable {t.path} {t.shape} does not match student "
                    f"variable {s.path} {s.shape}"
                )
        return list(zip(teacher_vars, student_vars))

    def compile(self, student_optimizer, distilled_optimizer, jit_compile=False, **kwargs):
        """Sets the two optimizers (built on their model's variables, see `make_optimizer`)."""
        for name, optimizer in (("student", student_optimizer), ("distilled", distilled_optimizer)):
            if not is_pre_reduced(optimizer):
                raise ValueError(
                    f"the {name} optimizer must skip its own cross-replica gradient sum "
                    "(the train step sums and clips first): use "
                    "tfislr.training.optimizers.make_optimizer or PreReducedAdamW/SGD"
                )
        # Keras XLA-compiles the function around `strategy.run`: on several devices that is
        # one cluster on the first device reading every replica's variables, which TF
        # rejects for any model (keras-team/keras#19005; benchmarks/xla_replicas.py). On N
        # replicas the step compiles only its replica-local part instead (see
        # `step_for_mode`); Keras' own jit stays off, on evaluation too.
        self.replica_jit_compile = jit_compile is True and (
            self.distribute_strategy.num_replicas_in_sync > 1
        )
        if jit_compile is True:
            xla.use_cpu_loop_emitters()  # before the first compilation (see tfislr.model.xla)
        super().compile(
            optimizer=student_optimizer,
            jit_compile=jit_compile and not self.replica_jit_compile,
            **kwargs,
        )
        self.student_optimizer = student_optimizer
        self.distilled_optimizer = distilled_optimizer

    def fully_built(self):
        """Models and optimizers are built by `__init__` and `compile` (no build from a batch)."""
        optimizers = (getattr(self, "student_optimizer", None), getattr(self, "distilled_optimizer", None))
        return all(m.built for m in self.named_models().values()) and all(
            o is not None and o.built for o in optimizers
        )

    def named_models(self):
        # A method, not a property: Keras' weight saving walks properties too.
        return {"student": self.student, "teacher": self.teacher, "distilled": self.distilled}

    @property
    def metrics(self):
        return [
            *self.train_trackers.values(),
            self.eval_loss_tracker,
            *self.accuracy_trackers.values(),
        ]

    def call(self, inputs, training=False):
        """Logits of the three models: `{"student", "teacher", "distilled"}`.

        `inputs` is either one view `{"landmarks", "padding_mask"}` shared by the
        three, or `{"student": view, "teacher": view, "distilled": view}`.
        """
        views = inputs if "student" in inputs else {name: inputs for name in MODEL_NAMES}
        return {name: model(views[name], training=training) for name, model in self.named_models().items()}

    # ------------------------------------------------------------- training
    def mixup(self, per_replica_batch_size, step):
        """This replica's manifold-mixup draw of step `step` (int64 scalar, 1-based).

        Returns `(applied [B] bool, lambda [B], permutation [B] int32, {model name: mixup
        dict of `ISLRClassifier.call`})`; each group of `batch_group_size` clips draws its own.
        """
        config = self.config
        probability = timeline.mixup_probability(
            self.epoch, config.epochs, config.mix_proba, config.mix_end_fraction
        )
        # One seed for the whole global batch: each group of clips draws its own mixup, as
        # each GPU of the original did, whichever replica holds it.
        seed = tf.stack([tf.constant(config.seed, tf.int64), tf.cast(step, tf.int64)])
        context = tf.distribute.get_replica_context()
        replica = 0 if context is None else context.replica_id_in_sync_group
        applied, lam, permutation, layers = draw_mixup(
            per_replica_batch_size, probability, config.mix_alpha, config.num_mix_layers, 3, seed,
            group_size=config.batch_group_size, replica=replica, replicas=losses.num_replicas(),
        )
        mixes = {
            name: {"lambda": lam, "permutation": permutation, "layer": layers[i]}
            for i, name in enumerate(MODEL_NAMES)
        }
        return applied, lam, permutation, mixes

    def distilled_inference_mode(self):
        """True from the switch epoch on (when the config asks for it): read on the host."""
        config = self.config
        return bool(config.distilled_inference_mode_second_half) and (
            int(self.epoch.numpy()) >= config.distilled_switch_epoch
        )

    def step_modes(self):
        """The distilled-model modes (`distilled_inference`) a train step is traced for."""
        return (False, True)

    def current_step_mode(self):
        """The mode of the next step: cached per epoch by `fit`, else read from the epoch."""
        mode = self._epoch_distilled_mode
        return self.distilled_inference_mode() if mode is None else mode

    def step_for_mode(self, mode):
        """The train step of distilled-model mode `mode` (traced once per mode).

        With `jit_compile` on one replica Keras compiles the whole step. On N replicas
        (`replica_jit_compile`) each replica XLA-compiles `replica_gradients` (forward,
        backward, its BatchNorm and dropout state, all replica-local) on its own device,
        and the cross-replica part (all-reduce, clipping, optimizers, teacher EMA, step
        counter, metrics) runs around it in the graph: one compilation per mode and device.
        """
        gradients = functools.partial(self.replica_gradients, distilled_inference=mode)
        if self.replica_jit_compile:
            gradients = tf.function(gradients, jit_compile=True, reduce_retracing=True)
        return functools.partial(self.train_step, distilled_inference=mode, gradients=gradients)

    def fit(self, *args, callbacks=None, **kwargs):
        # Last, so that it sees the epoch the other callbacks (EpochState) have just set.
        callbacks = [*(callbacks or []), _DistilledModePerEpoch()]
        try:
            return super().fit(*args, callbacks=callbacks, **kwargs)
        finally:
            self._epoch_distilled_mode = None

    def reduce_and_clip(self, gradients, optimizer):
        """Sums gradients over replicas once and clips them by their global norm.

        With a LossScaleOptimizer the gradients are still multiplied by the loss scale s;
        clipping is homogeneous (clip(s·g, s·c) = s·clip(g, c)), so clip at s·max_norm.
        Returns (gradients, unscaled global norm).
        """
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        scale = getattr(optimizer, "dynamic_scale", None)
        scale = tf.constant(1.0) if scale is None else ops.cast(scale, "float32")
        if self.config.max_grad_norm > 0:
            gradients, norm = tf.clip_by_global_norm(gradients, self.config.max_grad_norm * scale)
        else:
            norm = tf.linalg.global_norm(gradients)
        return gradients, norm / scale

    def update_teacher(self, alpha):
        """θ_T ← α θ_T + (1 − α) θ_S on every replica, from cross-replica context."""

        def ema(teacher_var, student_var, alpha):
            return teacher_var.assign(alpha * teacher_var + (1.0 - alpha) * student_var)

        def merge_fn(strategy, alpha):
            for teacher_var, student_var in self._ema_pairs():
                strategy.extended.update(
                    teacher_var.value, ema, args=(student_var.value, alpha), group=False
                )

        tf.__internal__.distribute.interim.maybe_merge_call(
            merge_fn, tf.distribute.get_strategy(), alpha
        )

    def replica_gradients(self, views, labels, step, distilled_inference=False):
        """This replica's losses and gradients for step `step` (1-based, int64 scalar).

        Replica-local: no cross-replica op and no write to a synchronised variable (only
        BatchNorm statistics and dropout seeds, which each replica keeps), so that XLA can
        compile it per replica. Returns (student gradients, distilled gradients, losses),
        the gradients dense, of this replica's losses scaled by 1 / replicas and by each
        optimizer's loss scale, not yet summed over replicas.
        """
        if self.view_augmenter is not None:  # inside the replica's (XLA) function
            views = self.view_augmenter(views)
        labels = ops.cast(labels, "int32")
        per_replica_batch_size = tf.shape(labels)[0]
        _, lam, permutation, mixes = self.mixup(per_replica_batch_size, step)
        config = self.config
        targets = losses.mixed_targets(labels, config.num_classes, lam, permutation)
        weight = schedules.consistency_weight(step, config.rampup_length, config.consistency_weight)

        # The teacher is never differentiated: run it outside the tape.
        teacher_logits = ops.stop_gradient(
            self.teacher(views["teacher"], training=True, mixup=mixes["teacher"])
        )

        student_vars = self.student.trainable_variables
        distilled_vars = self.distilled.trainable_variables
        with tf.GradientTape() as tape:
            student_logits = self.student(views["student"], training=True, mixup=mixes["student"])
            distilled_logits = self.distilled(
                views["distilled"], training=not distilled_inference, mixup=mixes["distilled"]
            )
            student_ce = losses.classification_loss(
                student_logits, targets, config.label_smoothing, config.ousm_k,
                config.batch_group_size,
            )
            distilled_ce = losses.classification_loss(
                distilled_logits, targets, config.label_smoothing, config.ousm_k,
                config.batch_group_size,
            )
            student_consistency = losses.consistency_loss(student_logits, teacher_logits)
            distilled_consistency = losses.consistency_loss(distilled_logits, teacher_logits)
            student_loss = student_ce + weight * student_consistency
            distilled_loss = distilled_ce + weight * distilled_consistency
            # The two models share no variable, so one gradient of the sum gives each
            # model the gradient of its own loss; each loss carries its own loss scale.
            objective = self.student_optimizer.scale_loss(
                losses.scale_for_replicas(student_loss)
            ) + self.distilled_optimizer.scale_loss(losses.scale_for_replicas(distilled_loss))

        gradients = tape.gradient(objective, student_vars + distilled_vars)
        gradients = [_dense_gradient(g) for g in gradients]
        values = {
            "student_loss": student_loss,
            "distilled_loss": distilled_loss,
            "consistency_loss": student_consistency,
        }
        return gradients[: len(student_vars)], gradients[len(student_vars):], values

    def train_step(self, data, distilled_inference=False, gradients=None):
        """One step; `distilled_inference` (a Python bool) runs the distilled model with
        `training=False` (see `step_for_mode`, which binds it per mode and passes
        `gradients`: `replica_gradients` or its per-replica XLA compilation)."""
        if gradients is None:
            gradients = functools.partial(
                self.replica_gradients, distilled_inference=distilled_inference
            )
        views, labels = data[0], data[1]
        self.step_counter.assign_add(1)
        step = tf.convert_to_tensor(self.step_counter)  # 1-based (a read, not the variable)
        student_grads, distilled_grads, values = gradients(views, labels, step)

        student_grads, _ = self.reduce_and_clip(student_grads, self.student_optimizer)
        distilled_grads, _ = self.reduce_and_clip(distilled_grads, self.distilled_optimizer)
        self.student_optimizer.apply(student_grads, self.student.trainable_variables)
        self.distilled_optimizer.apply(distilled_grads, self.distilled.trainable_variables)
        self.update_teacher(schedules.ema_decay(step, self.config.ema_decay))

        trackers = self.train_trackers
        trackers["loss"].update_state(values["student_loss"] + values["distilled_loss"])
        for name, value in values.items():
            trackers[name].update_state(value)
        return _logs({name: tracker.result() for name, tracker in trackers.items()})

    def test_step(self, data):
        inputs, labels = data[0], data[1]
        labels = ops.cast(labels, "int32")
        logits = self(inputs, training=False)
        # Per clip, not per batch: every clip weighs the same whatever the batch sizes
        # (a replica's last batch may hold 0 clips), so N replicas report 1 replica's mean.
        self.eval_loss_tracker.update_state(
            keras.losses.sparse_categorical_crossentropy(
                labels, logits["student"], from_logits=True
            )
        )
        for name in MODEL_NAMES:
            self.accuracy_trackers[name].update_state(labels, logits[name])
        results = {"loss": _global_result(self.eval_loss_tracker)}
        results.update(
            {f"{n}_accuracy": _global_result(t) for n, t in self.accuracy_trackers.items()}
        )
        return _logs(results)

    def predict_step(self, data):
        inputs = data[0] if isinstance(data, (tuple, list)) else data
        return self(inputs, training=False)


class _DistilledModePerEpoch(keras.callbacks.Callback):
    """Reads the distilled-model mode once per epoch, so steps need no host read."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model._epoch_distilled_mode = self.model.distilled_inference_mode()


def build_distiller(config, num_classes, steps_per_epoch, build_model=None):
    """Builds the three classifiers, the distiller and its two optimizers (call under scope).

    Args:
        config: a `tfislr.config.Config`.
        num_classes: number of signs.
        steps_per_epoch: optimizer steps per epoch (global batches).
        build_model: `build_model(model_config, num_classes, max_len, distilled)` → built
            classifier; default `tfislr.model.build_classifier` (tests pass stand-ins).

    Returns:
        A compiled `MeanTeacherDistiller`.
    """
    from tfislr.training.optimizers import make_optimizer

    if build_model is None:
        from tfislr.model import build_classifier as build_model
    train = config.train
    max_len = config.data.max_len
    total_steps = steps_per_epoch * train.epochs
    # Three draws from Keras' global seed: the teacher is initialised separately.
    student = build_model(config.model, num_classes, max_len, distilled=False)
    teacher = build_model(config.model, num_classes, max_len, distilled=False)
    distilled = build_model(config.model, num_classes, max_len, distilled=True)
    for model in (student, teacher, distilled):
        _build_on_dummy(model, max_len)
        # BatchNorm statistics per group of clips: the original's per-GPU batch on any
        # replica count (tfislr/model/ghost_batch_norm.py).
        set_virtual_batch_size(model, train.batch_group_size)
    view_augmenter = None
    if config.augment.enabled and config.augment.device == "accelerator":
        view_augmenter = functools.partial(augment_views, names=MODEL_NAMES,
                                           hand_fill=config.augment.hand_fill)
    distiller = MeanTeacherDistiller(
        student, teacher, distilled,
        MeanTeacherConfig.from_config(config, num_classes, total_steps),
        view_augmenter=view_augmenter, name="mean_teacher_distiller",
    )
    distiller.compile(
        student_optimizer=make_optimizer(train, total_steps, student, "student_adamw",
                                         config.runtime.precision),
        distilled_optimizer=make_optimizer(train, total_steps, distilled, "distilled_adamw",
                                           config.runtime.precision),
        jit_compile=config.runtime.jit_compile,
    )
    return distiller


def _build_on_dummy(model, max_len):
    if model.built and model.trainable_variables:
        return
    dummy = {
        "landmarks": ops.zeros((1, max_len, lm.NUM_POINTS, 3)),
        "padding_mask": ops.ones((1, max_len)),
    }
    model(dummy, training=False)
