"""tfislr: isolated sign language recognition from MediaPipe landmarks, in TensorFlow/Keras.

The public API, the names a user needs (everything else is reached by its module path):

    import tfislr

    config = tfislr.load_config("len80", ["train.epochs=5"])
    run_dir = tfislr.train(config, "data/asl-signs", fold=0)
    cv_dir = tfislr.cross_validate(config, "data/asl-signs")
    report = tfislr.export_ensemble([str(run_dir)], "artifacts/model.tflite")
    scores = tfislr.evaluate_tflite("artifacts/model.tflite", "data/asl-signs", fold=0)
    results, errors = tfislr.predict("artifacts/model.tflite", ["clip.parquet"])

The names load lazily (PEP 562): `import tfislr` imports no TensorFlow; the first use of a
name imports its module (the `tfislr-*` commands answer `--help` without TensorFlow too).
"""

import importlib

__version__ = "0.1.0"

# name → the module that defines it
_API = {
    "load_config": "tfislr.config",
    "Config": "tfislr.config",
    "train": "tfislr.training.run",
    "cross_validate": "tfislr.training.cross_validation",
    "export_ensemble": "tfislr.export.ensemble",
    "evaluate_tflite": "tfislr.evaluate",
    "predict": "tfislr.predict",
    "Preprocess": "tfislr.preprocessing",
    "build_classifier": "tfislr.model.classifier",
    "TFLiteRunner": "tfislr.export.runner",
    "RunDir": "tfislr.runs.run_dir",
    "read_oof": "tfislr.runs.oof",
    "write_synthetic_dataset": "tfislr.data.synthetic",
    "TfislrError": "tfislr.errors",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name):
    if name not in _API:
        raise AttributeError(f"module 'tfislr' has no attribute {name!r}")
    module = importlib.import_module(_API[name])
    # `tfislr.predict` is also a module: once imported, Python sets the package's attribute
    # to it. So the name is that module, callable as its `predict` (tfislr/predict.py),
    # whichever was imported first.
    value = module if name == "predict" else getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
