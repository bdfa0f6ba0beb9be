"""What a training run (or a cross-validation of runs) is asked to do, checked once.

`RunRequest(...).validate()` runs every check a run can make before it reads data, in the
order a user meets them: the config, the fold, the folder it writes (writable; a resumed
run's started with the same config), the strategy and the global batch split over its
replicas, then the data folder. `tfislr-train`, `tfislr-cv`, `train()` and
`cross_validate()` all go through it; a cross-validation validates its request once and
runs each fold as a `TrainingRun` of a copy (`for_fold`), not re-checked.
"""

import dataclasses
import pathlib

from tfislr import atomic
from tfislr.config import Config, strategy_name
from tfislr.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """One run's (or, with `cv=True`, one cross-validation's) inputs.

    Attributes:
        config: a `tfislr.config.Config` (overrides already applied).
        data_dir: a Kaggle-layout folder (train.csv, sign map, train_landmark_files/).
        output_dir: runs root; a new run goes to `<output_dir>/<config>/<timestamp>/`, a new
            CV to `<output_dir>/<config>/cv/<timestamp>/`.
        run_dir: exactly this folder (a run's; with `cv` the CV's); an unfinished one resumes.
        fold: the validation fold (None: fold 0, or no validation with `full`).
        full: train on all data, no validation.
        strategy: None (the default): the config's `runtime.strategy`; else a
            `get_strategy` name, which replaces the config's (the Python spelling of
            `--strategy`), or a `tf.distribute.Strategy` built by the caller. A validated
            request holds the strategy itself.
        cv: a cross-validation's request (every fold; `run_dir` is the CV folder).
        validated: set by `validate`; a validated request is not checked again.
    """

    config: Config
    data_dir: object
    output_dir: object = "runs"
    run_dir: object = None
    fold: int = None
    full: bool = False
    strategy: object = None
    cv: bool = False
    validated: bool = False

    @property
    def validation_fold(self):
        """The fold a single run holds out (None for a full fit or a CV's request)."""
        if self.full or self.cv:
            return None
        return 0 if self.fold is None else self.fold

    def validate(self):
        """This request checked, with its strategy built and its data dir a Path.

        `cpu:N` / `gpu:N` strategies split the device, which must happen before TensorFlow
        initialises: call this before anything else runs TensorFlow ops.

        Raises:
            ValueError: `config` is not a Config, or both a fold and `full` were given.
            ConfigError (a ValueError): a multi-worker cluster without `run_dir`; the folder
                the run writes cannot be written; `run_dir` holds a finished run, another
                config's run or other files; the batch does not split over the replicas;
                a fold outside the config's folds.
            MissingFileError: no Kaggle layout at `data_dir`.
        """
        if self.validated:
            return self
        from tfislr.data.kaggle import check_data_dir
        from tfislr.data.folds import check_fold
        from tfislr.runs.run_dir import RunDir
        from tfislr.training.batch_plan import check_batch_split
        from tfislr.training.strategy import cluster_tasks, get_strategy

        config = self.config
        if not isinstance(config, Config):
            raise ValueError(f"config must be a tfislr.config.Config, got {type(config).__name__}")
        if self.fold is not None and self.full:
            raise ValueError("give either a fold or full=True, not both")
        chosen = config.runtime.strategy if self.strategy is None else self.strategy
        if isinstance(chosen, str):  # so config.json and run.json record the name that ran
            chosen = strategy_name(chosen)
            config = dataclasses.replace(
                config, runtime=dataclasses.replace(config.runtime, strategy=chosen))
        if self.run_dir is None and cluster_tasks() > 1:  # before any worker waits for others
            what = ("cross-validation needs the same --cv-dir" if self.cv else
                    f"run ({cluster_tasks()} tasks in TF_CONFIG) needs the same --run-dir")
            raise ConfigError(f"a multi-worker {what} on every worker: each would start its "
                              "own timestamped folder")
        atomic.check_writable_dir(self.output_dir if self.run_dir is None else self.run_dir)
        if self.run_dir is not None and not self.cv:
            RunDir(self.run_dir).check_resumable(config)
        strategy = get_strategy(chosen)
        check_batch_split(config, strategy.num_replicas_in_sync)
        if self.validation_fold is not None:
            check_fold(self.validation_fold, config.data.num_folds)
        data_dir = check_data_dir(self.data_dir)
        return dataclasses.replace(self, config=config, data_dir=data_dir, strategy=strategy,
                                   validated=True)

    def for_fold(self, fold, run_dir):
        """A validated CV request's run of `fold`, in `run_dir` (its checks are the CV's;
        the folder's own state is checked when the run opens it)."""
        if not (self.validated and self.cv):
            raise ValueError("for_fold needs a validated cross-validation request")
        return dataclasses.replace(self, fold=fold, run_dir=pathlib.Path(run_dir), cv=False)
