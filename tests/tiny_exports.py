"""Small distilled classifiers and run folders shared by the export tests: the real architecture
at tiny widths (a conversion takes seconds), two members of different max_len, an untrained
model for the evaluate, predict and stream tests, a run dir as training writes it, and a
LiteRT signature runner."""

import json

import keras
import numpy as np

from tfislr import landmarks as lm
from tfislr.export.members import EnsembleMember
from tfislr.runs.run_dir import RunDir

NUM_CLASSES = 7
SIGNS = [f"sign_{i}" for i in range(NUM_CLASSES)]


# One DeBERTa layer: a conversion takes ~5 s instead of ~11 s with three. The three-layer
# stack is converted in test_full_size_ensemble_fits_kaggle_limit (the real models, with
# every check of the export) and tests/model/test_modes.py.
TINY = dict(embed_dim=4, dense_dim=16, transfo_dim=32, distill_dense_dim=16,
            distill_transfo_dim=32, transfo_layers=1, num_heads=4, drop_rate=0.0)


def small_model(num_classes=NUM_CLASSES, max_len=10, seed=0):
    """A distilled classifier with tiny widths (the real architecture)."""
    from tfislr.config import ModelConfig

    from tfislr.model import build_classifier

    keras.utils.set_random_seed(seed)
    model = build_classifier(ModelConfig(**TINY), num_classes, max_len, distilled=True)
    model({"landmarks": np.zeros((1, max_len, lm.NUM_POINTS, 3), np.float32),
           "padding_mask": np.ones((1, max_len), np.float32)})
    # Random init gives near-uniform probabilities; larger weights make the parity
    # and averaging checks see confident, distinct predictions.
    for variable in model.trainable_variables:
        if len(variable.shape) >= 2:
            variable.assign(variable * 3.0)
    return model


def untrained_model(num_classes, max_len, seed=1):
    """A distilled classifier with tiny widths as initialised (no weight scaling): for the
    tests of what a command does with a model's answers, not of the answers."""
    from tfislr.config import ModelConfig

    from tfislr.model import build_classifier

    keras.utils.set_random_seed(seed)
    return build_classifier(ModelConfig(**TINY), num_classes, max_len, distilled=True)


def members(seed=0, num_classes=NUM_CLASSES, signs=SIGNS):
    return [
        EnsembleMember("short", small_model(num_classes, 8, seed), 8, signs),
        EnsembleMember("long", small_model(num_classes, 20, seed + 1), 20, signs),
    ]


def runner_for(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    return interpreter, interpreter.get_signature_runner("serving_default")


FULL_FIT = {"full": True, "fold": None, "num_folds": None, "fold_seed": None,
            "original_folds": None, "val_participants": []}
FOLD_0 = {"full": False, "fold": 0, "num_folds": 4, "fold_seed": 42, "original_folds": True,
          "val_participants": [3, 5]}


def write_run(run_dir, model, max_len, signs=SIGNS, name="tiny", split=FULL_FIT):
    """A run dir as training writes it (only the files export reads)."""
    from tfislr.config import config_from_dict

    (run_dir / "models").mkdir(parents=True)
    config = config_from_dict({"name": name, "data": {"max_len": max_len}, "model": TINY})
    config.to_json(run_dir / "config.json")
    RunDir(run_dir).write_run_info(split)
    (run_dir / "signs.json").write_text(json.dumps(signs))
    model.save(run_dir / "models" / "distilled_soup.keras")
    RunDir(run_dir).mark_finished()
    return run_dir


def weight_types(model_content):
    """Element types of the constant tensors (the weights) in a flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(bytearray(model_content), 0)
    graph = model.Subgraphs(0)
    types = {}
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        if model.Buffers(tensor.Buffer()).DataLength() > 256:  # large constants only
            name = names[tensor.Type()]
            types[name] = types.get(name, 0) + 1
    return types
