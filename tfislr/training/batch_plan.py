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
from tfislr.text import plural


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


def nearest_multiple(value, unit):
    """The positive multiple of `unit` nearest `value` (the larger one on a tie)."""
    below = value // unit * unit
    return below if below > 0 and value - below < below + unit - value else below + unit


def _per_replica(key, global_batch, replicas, group=1):
    """`global_batch // replicas`, checking it splits into whole groups on every replica.

    A valid global batch is a multiple of `replicas × group`, so that is what an error
    suggests: the nearest such value passes every check here.
    """
    unit = replicas * group
    if global_batch % unit == 0:
        return global_batch // replicas
    if global_batch % replicas:
        why = f"does not divide by the {replicas} replicas"
    else:
        why = (f"gives {global_batch // replicas} clips per replica, not a whole number of "
               f"train.batch_group_size ({group}) groups: OUSM and mixup work within a group "
               "on one replica")
    multiple = (f"{unit} = {replicas} replicas × train.batch_group_size {group}" if group > 1
                else f"{replicas}")
    raise ConfigError(
        f"{key} ({global_batch}) {why}; use a multiple of {multiple} "
        f"(e.g. {nearest_multiple(global_batch, unit)}) or another replica count"
    )


def check_batch_split(config, replicas):
    """(per-replica batch, per-replica eval batch) of `config` on `replicas` replicas.

    Needs no data, so runs check it before the store is prepared. Raises
    `tfislr.errors.ConfigError` (a ValueError) when a global batch does not divide by
    `replicas` or a replica's batch is not a whole number of OUSM/mixup groups; the
    message names every such batch.
    """
    replicas = check_int("replicas", replicas)
    data, group = config.data, config.train.batch_group_size
    splits, errors = [], []
    for key, global_batch, key_group in (
        ("data.global_batch_size", data.global_batch_size, group),
        ("data.eval_global_batch_size", data.eval_global_batch_size, 1),
    ):
        try:
            splits.append(_per_replica(key, global_batch, replicas, key_group))
        except ConfigError as error:
            errors.append(str(error))
    if errors:  # both at once: fixing the one the message names must not reveal the other
        raise ConfigError("; and ".join(errors))
    return tuple(splits)


def plan_batches(config, num_train, replicas):
    """The `BatchPlan` of `config` (a `tfislr.config.Config`) for `num_train` training clips.

    Raises `tfislr.errors.ConfigError` (a ValueError) for what `check_batch_split` refuses,
    and when there is not one full global batch of training clips.
    """
    replicas = check_int("replicas", replicas)
    num_train = check_int("num_train", num_train, minimum=0)
    data, train = config.data, config.train
    per_replica, eval_per_replica = check_batch_split(config, replicas)
    group = train.batch_group_size
    steps_per_epoch = num_train // data.global_batch_size
    if steps_per_epoch < 1:
        raise ConfigError(
            f"{num_train} training clips are fewer than one global batch "
            f"(data.global_batch_size {data.global_batch_size}); lower it, keeping it a "
            f"multiple of {replicas * group} ({plural(replicas, 'replica')} × train.batch_group_size "
            f"{group})"
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
