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


@pytest.mark.parametrize("overrides, replicas", [
    (["train.batch_group_size=16"], 3),  # demo on cpu:3: 32 -> 33 was refused as not whole groups
    ([], 3),  # len80: 256 on 3 replicas of 32-clip groups -> 288
    ([], 16),  # 256 divides by 16 but gives half a group per replica
    (["data.eval_global_batch_size=100"], 8),
    (["data.global_batch_size=64", "train.batch_group_size=16"], 5),
])
def test_the_suggested_global_batch_passes_every_check(overrides, replicas):
    """The value an error suggests is the nearest one that satisfies every constraint."""
    import re

    config = load_config("len80", overrides)
    with pytest.raises(ValueError) as error:
        plan_batches(config, 10_000, replicas)
    suggestions = re.findall(r"(data\.\w+) \((\d+)\) [^;]*; use a multiple of (\d+)[^(]*\(e\.g\. (\d+)\)",
                             str(error.value))
    assert suggestions and len(suggestions) == str(error.value).count("e.g.")
    # The config's own checks and the plan's pass with every suggested value.
    fixed = load_config("len80", overrides + [f"{key}={value}" for key, _, _, value in suggestions])
    plan_batches(fixed, 10_000, replicas)
    for key, refused, unit, suggested in suggestions:
        refused, unit, suggested = int(refused), int(unit), int(suggested)
        group = config.train.batch_group_size if key == "data.global_batch_size" else 1
        assert unit == replicas * group
        # Nearest: no valid value lies closer to the refused one.
        valid = [v for v in range(1, 2 * suggested + 1) if v % unit == 0]
        assert abs(suggested - refused) == min(abs(v - refused) for v in valid)
