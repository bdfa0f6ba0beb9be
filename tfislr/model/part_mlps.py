"""Body-part MLPs: per-frame features from the hands, lips, face and all landmarks."""

import keras
from keras import ops

from tfislr import landmarks as lm
from tfislr.model.activations import mish
from tfislr.model.initializers import (
    torch_linear_bias_initializer,
    torch_linear_kernel_initializer,
)
from tfislr.model.ghost_batch_norm import GhostBatchNormalization
from tfislr.model.per_frame import leading_dims, per_frame


def _batch_norm(name, dtype_policy):
    # torch BatchNorm1d defaults: eps 1e-5, momentum 0.1 (Keras counts the other way: 0.9).
    # Whole-batch statistics until training sets the original's per-GPU group of clips
    # (`ghost_batch_norm.set_virtual_batch_size`); inference never depends on it.
    return GhostBatchNormalization(
        momentum=0.9, epsilon=1e-5, dtype=dtype_policy, name=name
    )


def select_points(features, point_lists):
    """`[features[:, :, points] for points in point_lists]` from ONE split of the point axis.

    Each list is cut into contiguous runs; the point axis is split (constant sizes) at every
    run boundary, and each list's pieces are concatenated in order (none when a list is all
    the points in order). Its gradient is one concatenation; on CPU, a slice per list (a
    pad each, then their sum), a strided slice or a gather (a strided-slice gradient, a
    segment sum) cost several times as much.

    Args:
        features: `[B, T, P, C]` with a static `P`.
        point_lists: lists of point indices in `[0, P)`.
    """
    num_points = features.shape[2]
    runs = []
    for points in point_lists:
        runs.append([])
        for point in points:
            if runs[-1] and runs[-1][-1][1] == point:
                runs[-1][-1][1] += 1
            else:
                runs[-1].append([point, point + 1])
    cuts = sorted({0, num_points} | {bound for own in runs for run in own for bound in run})
    pieces = ops.split(features, cuts[1:-1], axis=2) if len(cuts) > 2 else [features]
    selected = []
    for points, own in zip(point_lists, runs):
        if list(points) == list(range(num_points)):
            selected.append(features)
            continue
        parts = [
            piece
            for start, stop in own
            for piece, begin in zip(pieces, cuts)
            if start <= begin < stop
        ]
        selected.append(parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=2))
    return selected


@keras.saving.register_keras_serializable(package="tfislr")
class PartMLP(keras.layers.Layer):
    """One branch: select points, optionally centre, flatten, Dense -> BN -> Dropout -> mish.

    Centring (hands, lips, face): subtract the masked mean over (real frames x selected
    points), per feature channel and sample, then zero the padded frames again.
    Flatten order is point-major (feature index = point_rank * C + channel).

    BatchNorm in training normalises over all `B * T` rows, padded frames included, as the
    original's `BatchNorm1d` on the flattened batch did (its masks never reached BN). Padded
    rows only carry values computed from zeroed inputs (see `LandmarkEmbedding`), so raw
    padded values cannot leak; in inference mode padded rows never affect real ones.

    Args:
        points: sequence of point indices (into the 100 model points) this branch sees.
        units: output width (the seed's dense_dim).
        dropout: dropout rate.
        center: whether to centre as described above.

    Call: `(features [B, T, 100, C], padding_mask=None [B, T], training=None) -> [B, T, units]`;
    with `selected=True`, `features` holds this branch's points only (`[B, T, len(points), C]`,
    in the order of `points`), as `PartMLPs` passes them.
    """

    def __init__(self, points, units, dropout=0.0, center=True, **kwargs):
        super().__init__(**kwargs)
        points = [int(p) for p in points]
        if not points or min(points) < 0 or max(points) >= lm.NUM_POINTS:
            raise ValueError(
                f"points must be a non-empty list of indices in [0, {lm.NUM_POINTS}), "
                f"got {points}"
            )
        self.points = points
        self.units = units
        self.dropout = dropout
        self.center = center
        self.dense = None  # built once the channel count is known
        self.norm = _batch_norm("batch_norm", self.dtype_policy)
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, features_shape, padding_mask_shape=None):
        fan_in = len(self.points) * features_shape[-1]
        self.dense = keras.layers.Dense(
            self.units,
            kernel_initializer=torch_linear_kernel_initializer(),
            bias_initializer=torch_linear_bias_initializer(fan_in),
            dtype=self.dtype_policy,
            name="dense",
        )
        rows = tuple(features_shape[:2])
        self.dense.build(rows + (fan_in,))
        self.norm.build(rows + (self.units,))

    def call(self, features, padding_mask=None, training=None, selected=False):
        x = features if selected else self._select(features)
        if self.center:
            if padding_mask is None:
                x = x - ops.mean(x, axis=(1, 2), keepdims=True)
            else:
                mask = ops.expand_dims(ops.cast(padding_mask, x.dtype), (2, 3))
                count = ops.sum(mask, axis=(1, 2), keepdims=True) * len(self.points)
                mean = ops.sum(x * mask, axis=(1, 2), keepdims=True) / ops.maximum(count, 1.0)
                x = (x - mean) * mask
        batch, length = leading_dims(x)
        x = ops.reshape(x, (batch, length, len(self.points) * x.shape[-1]))
        x = self.norm(per_frame(self.dense, x), training=training)
        return mish(self.dropout_layer(x, training=training))

    def _select(self, features):
        """`features[:, :, points]` (see `select_points`)."""
        return select_points(features, [self.points])[0]

    def compute_output_shape(self, features_shape, padding_mask_shape=None):
        return tuple(features_shape[:2]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "points": list(self.points),
                "units": self.units,
                "dropout": self.dropout,
                "center": self.center,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="tfislr")
class PartMLPs(keras.layers.Layer):
    """All branches and their combination (docs/recipe.md §6).

        all  = PartMLP(100 points, not centred)
        hand = max(PartMLP(left hand), PartMLP(right hand))     # elementwise
        lips = PartMLP(21 lips points); face = PartMLP(25 face points, types 3 and 6)
        out  = mish(Dropout(BN(Dense(output_dim)(concat[all, hand, lips, face])))) * mask

    Branch dropout is `drop_rate` when `dense_dim >= 256`, else `drop_rate / 2` (the
    original's rule); the combining block always uses `drop_rate`.

    Args:
        dense_dim: branch width.
        output_dim: width of the combined output (the first transformer width).
        drop_rate: base dropout rate.

    Call: `(features [B, T, 100, C], padding_mask=None [B, T], training=None) ->
    [B, T, output_dim]`, zero at padded frames. BN statistics in training include padded
    rows (see `PartMLP`).
    """

    def __init__(self, dense_dim, output_dim, drop_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dense_dim = dense_dim
        self.output_dim = output_dim
        self.drop_rate = drop_rate
        branch_dropout = drop_rate if dense_dim >= 256 else drop_rate / 2

        def branch(points, name, center=True):
            return PartMLP(
                points, dense_dim, dropout=branch_dropout, center=center,
                dtype=self.dtype_policy, name=name,
            )

        self.all_mlp = branch(range(lm.NUM_POINTS), "all_landmarks", center=False)
        self.left_hand_mlp = branch(lm.LEFT_HAND_POINTS, "left_hand")
        self.right_hand_mlp = branch(lm.RIGHT_HAND_POINTS, "right_hand")
        self.lips_mlp = branch(lm.LIPS_POINTS, "lips")
        self.face_mlp = branch(lm.FACE_POINTS, "face")
        self.combine_dense = keras.layers.Dense(
            output_dim,
            kernel_initializer=torch_linear_kernel_initializer(),
            bias_initializer=torch_linear_bias_initializer(4 * dense_dim),
            dtype=self.dtype_policy,
            name="combine_dense",
        )
        self.combine_norm = _batch_norm("combine_batch_norm", self.dtype_policy)
        self.combine_dropout = keras.layers.Dropout(drop_rate, dtype=self.dtype_policy)

    @property
    def branches(self):
        return [self.all_mlp, self.left_hand_mlp, self.right_hand_mlp, self.lips_mlp, self.face_mlp]

    def build(self, features_shape, padding_mask_shape=None):
        for mlp in self.branches:
            mlp.build(features_shape)
        rows = tuple(features_shape[:2])
        self.combine_dense.build(rows + (4 * self.dense_dim,))
        self.combine_norm.build(rows + (self.output_dim,))

    def call(self, features, padding_mask=None, training=None):
        branches = self.branches
        selected = select_points(features, [mlp.points for mlp in branches])
        all_points, left, right, lips, face = (
            mlp(x, padding_mask=padding_mask, training=training, selected=True)
            for mlp, x in zip(branches, selected)
        )
        parts = [all_points, ops.maximum(left, right), lips, face]
        x = ops.concatenate(parts, axis=-1)
        x = self.combine_norm(per_frame(self.combine_dense, x), training=training)
        x = mish(self.combine_dropout(x, training=training))
        if padding_mask is not None:
            x = x * ops.expand_dims(ops.cast(padding_mask, x.dtype), -1)
        return x

    def compute_output_shape(self, features_shape, padding_mask_shape=None):
        return tuple(features_shape[:2]) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dense_dim": self.dense_dim,
                "output_dim": self.output_dim,
                "drop_rate": self.drop_rate,
            }
        )
        return config
