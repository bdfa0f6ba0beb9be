"""The export tests' shared fp32 ensemble (exported once per session)."""

import pytest

from tfislr.export import export_ensemble

from tiny_exports import members


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """A two-member fp32 ensemble written through the public API, with its report."""
    ensemble = members()
    path = tmp_path_factory.mktemp("export") / "ensemble.tflite"
    report = export_ensemble(ensemble, path, "fp32", verbose=False, latency_repeats=1)
    return ensemble, path, report
