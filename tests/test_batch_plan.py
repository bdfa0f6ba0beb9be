"""The batch plan: the recipe's global batch on any replica count."""

import pytest

from tfislr.config import load_config
from tfislr.data.folds import fold_indices
from tfislr.training.batch_plan import plan_batches


@pytest.mark.parametrize("name", ["len25", "len80"])
@pytest.mark.parametrize("replicas", [1, 2, 8])
def test_competition_steps_do_not_depend_on_the_replica_count(skeleton_csv, name, replicas):
    config = load_config(name)
    full = plan_batches(config, len(skeleton_csv), replicas)
    train_rows, _ = fold_indices(skeleton_csv, 0)
    fold0 = plan_batches(config, len(train_rows), replicas)
    assert (full.num_train, full.steps_per_epoch, full.total_steps) == (94_477, 369, 36_900)
    assert (fold0.num_train, fold0.steps_per_epoch, fold0.total_steps) == (72_119, 281, 28_100)
    assert full.global_batch_size == 256 and full.per_replica_batch_size == 256 // replicas
    assert full.group_size == 32 and full.groups_per_replica == 8 // replicas
    assert full.eval_per_replica_batch_size * replicas == full.eval_global_batch_size
    assert set(full.to_dict()) >= {
        "global_batch_size", "per_replica_batch_size", "replicas", "steps_per_epoch", "total_steps"
    }


def test_bad_splits_name_both_numbers():
    config = load_config("len80")
    with pytest.raises(ValueError, match=r"data.global_batch_size \(256\) does not divide by the 3 replicas"):
        plan_batches(config, 1000, 3)
    # 16 replicas hold 16 clips each: half an OUSM/mixup group of 32.
    with pytest.raises(ValueError, match="16 clips per replica, not a whole number of"):
        plan_batches(config, 1000, 16)
    assert plan_batches(load_config("len80", ["train.batch_group_size=16"]), 1000, 16).groups_per_replica == 1
    eval_config = load_config("len80", ["data.eval_global_batch_size=100"])
    with pytest.raises(ValueError, match=r"data.eval_global_batch_size \(100\) does not divide by the 8"):
        plan_batches(eval_config, 1000, 8)
    with pytest.raises(ValueError, match="255 training clips are fewer than one global batch"):
        plan_batches(config, 255, 1)
