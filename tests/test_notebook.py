"""notebooks/inspect.ipynb: quick, its cells parse and every tfislr name it imports exists;
`large`, it runs top to bottom on demo-style outputs (a short real run + export)."""

import ast
import importlib.util
import pathlib
import re

import nbformat
import pytest
from nbclient import NotebookClient

from tfislr.config import load_config

from subprocess_runs import env

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "inspect.ipynb"


def _code_cells():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_notebook_has_no_outputs_and_its_tfislr_imports_exist():
    """Quick: the notebook is committed without outputs, each code cell is valid Python, and
    every module and name it imports from tfislr exists (a rename fails here, not only when
    the large test runs the notebook)."""
    cells = _code_cells()
    assert all(not cell.get("outputs") for cell in cells), "commit the notebook without outputs"
    imported = []
    for cell in cells:
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Import):
                imported += [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported += [(node.module, alias.name) for alias in node.names]
    imported = [(module, name) for module, name in imported if module.split(".")[0] == "tfislr"]
    assert len(imported) >= 10  # the parser found the notebook's imports
    for module, name in imported:
        found = importlib.import_module(module)
        if name is not None:  # a submodule (`from tfislr import plots`) or an attribute
            assert hasattr(found, name) or importlib.util.find_spec(f"{module}.{name}"), (
                f"from {module} import {name}")


@pytest.fixture(scope="module")
def exported_run(synthetic_data_dir, tmp_path_factory):
    """A 2-epoch run of a narrow demo config with the real classifier, exported to TFLite.

    The distilled model keeps one training mode throughout: its switch to inference mode
    in the second epoch would trace the whole step a second time (~40 s on 2 cores), and
    the notebook reads the same files either way.
    """
    from tfislr.export import export_ensemble
    from tfislr.training.run import train

    root = tmp_path_factory.mktemp("notebook_run")
    config = load_config("demo", [
        "train.epochs=2", "train.soup_last_n=2", "data.global_batch_size=8", "train.batch_group_size=8",
        "model.dense_dim=16", "model.transfo_dim=32", "model.distill_dense_dim=16",
        "model.distill_transfo_dim=32", "model.num_heads=4",
        "train.distilled_inference_mode_second_half=false",
        f"data.prepared_dir={root / 'prepared'}",
    ])
    run_dir = train(config, synthetic_data_dir, output_dir=root / "runs", verbose=0)
    tflite = root / "model.tflite"
    export_ensemble([str(run_dir)], output_path=str(tflite), quantization="fp32",
                    latency_repeats=1, verbose=False)
    return run_dir, tflite


@pytest.mark.large  # a 2-epoch training of the real classifier and an export first
def test_notebook_executes_without_errors(exported_run, synthetic_data_dir, monkeypatch):
    run_dir, tflite = exported_run
    monkeypatch.setenv("PYTHONPATH", env()["PYTHONPATH"])  # the kernel imports this checkout
    monkeypatch.setenv("TFISLR_DATA_DIR", str(synthetic_data_dir))
    monkeypatch.setenv("TFISLR_RUN_DIR", str(run_dir))
    monkeypatch.setenv("TFISLR_TFLITE", str(tflite))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # The figures and animations were really produced, and the TFLite cell printed its top 5.
    assert sum(o.output_type == "display_data" and "image/png" in o.data for o in outputs) >= 8
    assert sum("text/html" in o.get("data", {}) and "<script" in o.data["text/html"]
               for o in outputs) >= 2
    text = "".join(o.get("text", "") for o in outputs)
    assert "validation accuracy" in text and "true sign:" in text
    # No TensorFlow/absl start-up noise (the notebook starts TensorFlow as the commands do):
    # the first cell prints only its three lines, and no cell prints an absl log line.
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert {(o.output_type, o.get("name")) for o in first.outputs} == {("stream", "stdout")}
    absl = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog", re.MULTILINE)
    stderr = "".join(o.text for o in outputs
                     if o.output_type == "stream" and o.name == "stderr")
    assert not absl.search(stderr), stderr
