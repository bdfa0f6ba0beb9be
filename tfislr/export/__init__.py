"""tfislr.export: one Kaggle-ready TFLite file from training runs (see `tflite.py`)."""

from tfislr.export.tflite import (  # noqa: F401
    MAX_SIZE_MB,
    PARITY_TOLERANCE,
    QUANTIZATIONS,
    EnsembleMember,
    ExportError,
    build_ensemble_module,
    check_builtin_ops,
    convert,
    export_ensemble,
    latest_run,
    load_member,
    model_ops,
)
