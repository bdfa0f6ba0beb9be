"""tfislr.export: one Kaggle-ready TFLite file from training runs.

Modules, each with one job: `contract` (signature names, `ExportError`),
`members` (loading runs), `graph` (the ensemble graph and its conversion),
`checks` (size, parity, edge inputs), `runner` (the one TFLite runner and
latency summary) and `ensemble` (the export and its report).
"""

from tfislr.export.checks import MAX_SIZE_MB, PARITY_TOLERANCE  # noqa: F401
from tfislr.export.contract import ExportError  # noqa: F401
from tfislr.export.ensemble import export_ensemble  # noqa: F401
from tfislr.export.graph import (  # noqa: F401
    QUANTIZATIONS,
    build_ensemble_module,
    check_builtin_ops,
    convert,
    model_ops,
)
from tfislr.export.members import EnsembleMember, latest_run, load_member  # noqa: F401
from tfislr.export.runner import TFLiteRunner, latency_summary  # noqa: F401
