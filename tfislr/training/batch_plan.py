"""The batch plan of a run: global and per-replica batches, groups, steps.

The recipe fixes the GLOBAL batch (the original: 8 GPUs × 32 = 256 clips per optimizer
step) and the group that OUSM and mixup work within (32 clips, one GPU's batch). The
replica count only decides how the global batch is split, so steps per epoch, total
steps and therefore every step-based schedule (warm-up, consistency ramp-up, EMA) are
the same on 1, 2 or 8 devices: 369 steps an epoch on the full competition set (94,477
clips), 281 on fold 0's training part (72,119 clips) (docs/recipe.md §13).
"""

import dataclasses

from tfislr.checks import check_int
from tfislr.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """How a run batches its data; `to_dict()` is what run.json records."""

    replicas: int
    global_batch_size: int
    per_replica_batch_size: int
    group_size: int  # OUSM / mixup group (train.batch_group_size)
    groups_per_replica: int
    eval_global_batch_size: int
    eval_per_replica_batch_size: int
    num_train: int
    steps_per_epoch: int  # full global batches: the last partial batch of an epoch is dropped
    epochs: int
    total_steps: int

    def to_dict(self):
        return dataclasses.asdict(self)


def _per_replica(key, global_batch, replicas):
    if global_batch % replicas:
        raise ConfigError(
            f"{key} ({global_batch}) does not divide by the {replicas} replicas; "
            f"use a multiple of {replicas} (e.g. {(global_batch // replicas + 1) * replicas}) "
            "or another replica count"
        )
    return global_batch // replicas


def plan_batches(config, num_train, replicas):
    """The `BatchPlan` of `config` (a `tfislr.config.Config`) for `num_train` training clips.

    Raises `tfislr.errors.ConfigError` (a ValueError) when a global batch does not divide
    by `replicas`, when a replica's batch is not a whole number of OUSM/mixup groups, or
    when there is not one full global batch of training clips.
    """
    replicas = check_int("replicas", replicas)
    num_train = check_int("num_train", num_train, minimum=0)
    data, train = config.data, config.train
    per_replica = _per_replica("data.global_batch_size", data.global_batch_size, replicas)
    group = train.batch_group_size
    if per_replica % group:
        raise ConfigError(
            f"data.global_batch_size {data.global_batch_size} on {replicas} replicas gives "
            f"{per_replica} clips per replica, not a whole number of train.batch_group_size "
            f"({group}) groups: OUSM and mixup work within a group on one replica. Use fewer "
            f"replicas, or a group size that divides {per_replica}"
        )
    eval_per_replica = _per_replica(
        "data.eval_global_batch_size", data.eval_global_batch_size, replicas
    )
    steps_per_epoch = num_train // data.global_batch_size
    if steps_per_epoch < 1:
        raise ConfigError(
            f"{num_train} training clips are fewer than one global batch "
            f"(data.global_batch_size {data.global_batch_size}); lower it (keeping it a "
            f"multiple of train.batch_group_size {group})"
        )
    return BatchPlan(
        replicas=replicas,
        global_batch_size=data.global_batch_size,
        per_replica_batch_size=per_replica,
        group_size=group,
        groups_per_replica=per_replica // group,
        eval_global_batch_size=data.eval_global_batch_size,
        eval_per_replica_batch_size=eval_per_replica,
        num_train=num_train,
        steps_per_epoch=steps_per_epoch,
        epochs=train.epochs,
        total_steps=steps_per_epoch * train.epochs,
    )
