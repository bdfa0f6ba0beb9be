"""Small models and configs shared by the training tests: a stand-in classifier with the
real call signature (landmarks, padding mask, mixup), a distiller built on it, random views,
and the real classifier at reduced widths."""

import keras
import numpy as np
from keras import ops

from tfislr.config import load_config
from tfislr.training import mean_teacher


NUM_CLASSES = 5


MAX_LEN = 12


@keras.saving.register_keras_serializable(package="tfislr_tests")
class TinyClassifier(keras.Model):
    """Stand-in classifier: per-frame projection, BatchNorm, 3 mixable blocks, masked mean."""

    def __init__(self, num_classes, width=16, num_layers=3, drop_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.width = width
        self.num_layers = num_layers
        self.drop_rate = drop_rate
        self.proj = keras.layers.Dense(width, name="proj")
        self.bn = keras.layers.BatchNormalization(name="bn")
        self.drop = keras.layers.Dropout(drop_rate)
        self.blocks = [keras.layers.Dense(width, name=f"block_{i}") for i in range(num_layers)]
        self.head = keras.layers.Dense(num_classes, name="head")

    def call(self, inputs, training=None, mixup=None):
        x = inputs["landmarks"]
        mask = ops.cast(inputs["padding_mask"], "float32")
        batch, time = ops.shape(x)[0], ops.shape(x)[1]
        h = self.proj(ops.reshape(x, (batch, time, x.shape[2] * x.shape[3])))
        h = self.drop(self.bn(h, training=training), training=training)
        for i, block in enumerate(self.blocks):
            if mixup is not None:
                lam = ops.cast(mixup["lambda"], h.dtype)[:, None, None]
                here = ops.reshape(ops.equal(mixup["layer"], i), (-1, 1))  # scalar or [B]
                other = ops.take(h, mixup["permutation"], axis=0)
                h = ops.where(here[..., None], lam * h + (1.0 - lam) * other, h)
                union = ops.maximum(mask, ops.take(mask, mixup["permutation"], axis=0))
                mask = ops.where(here, union, mask)
            h = ops.relu(block(h)) * ops.cast(mask, h.dtype)[..., None]
        count = ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)
        pooled = ops.sum(ops.cast(h, "float32"), axis=1) / count
        return ops.cast(self.head(pooled), "float32")

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "width": self.width,
            "num_layers": self.num_layers,
            "drop_rate": self.drop_rate,
        }


def build_tiny(model_config, num_classes, max_len, distilled=False):
    return TinyClassifier(
        num_classes,
        width=8 if distilled else 16,
        num_layers=model_config.transfo_layers,
        drop_rate=model_config.drop_rate,
    )


def tiny_config(*overrides):
    return load_config(
        "len25",
        [f"data.max_len={MAX_LEN}", "data.global_batch_size=8", "train.batch_group_size=8",
         "train.epochs=2", *overrides],
    )


def make_views(rng, n, max_len=MAX_LEN):
    def view():
        lengths = rng.integers(3, max_len + 1, size=n)
        mask = (np.arange(max_len)[None] < lengths[:, None]).astype("float32")
        landmarks = rng.normal(size=(n, max_len, 100, 3)).astype("float32") * mask[..., None, None]
        return {"landmarks": landmarks, "padding_mask": mask}

    return {name: view() for name in mean_teacher.MODEL_NAMES}


def make_distiller(*overrides, steps_per_epoch=4, seed=0):
    keras.utils.set_random_seed(seed)
    return mean_teacher.build_distiller(
        tiny_config(*overrides), NUM_CLASSES, steps_per_epoch, build_model=build_tiny
    )


def small_real_model(num_classes=7, max_len=25):
    import tfislr.model as model_module
    config = load_config(
        "len25",
        ["model.dense_dim=32", "model.transfo_dim=64", "model.distill_dense_dim=32",
         "model.distill_transfo_dim=64", "model.num_heads=4"],
    )
    model = model_module.build_classifier(config.model, num_classes, max_len)
    mean_teacher._build_on_dummy(model, max_len)
    return config, model
