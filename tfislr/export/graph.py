"""The exported graph and its conversion: members -> `tf.Module` -> TFLite flatbuffer.

`build_ensemble_module` wraps each member's `Preprocess` and Keras model into
the contract's signature (see `contract.py`) and averages their softmax;
`convert` turns it into TFLite bytes with builtin ops only, `check_builtin_ops`
refuses any Select-TF or custom op left in a flatbuffer.
"""

import numpy as np

from tfislr import landmarks as lm
from tfislr.export.contract import INPUT_NAME, OUTPUT_NAME, ExportError
from tfislr.export.members import check_members_agree
from tfislr.text import plural

QUANTIZATIONS = ("fp16", "fp32", "int8")


def backing_variables(models):
    """The `tf.Variable`s behind Keras 3 models' variables, for a `tf.Module` to hold.

    Keras 3 variables are not tf.Module-trackable: a module that does not hold
    the backing tf.Variables converts to an empty, all-NaN model.
    """
    return [v.value for model in models for v in model.variables]


def build_ensemble_module(members):
    """The tf.Module whose `serving_default` is the exported signature.

    `serving_default` is traced in the models' TFLite layout (`tflite_layout`: the same
    math with shapes that follow from the input's, no per-call dynamic tensors);
    `reference` is the same function traced as the models train, which the parity check
    compares the file with.
    """
    import tensorflow as tf

    from tfislr.model.modes import tflite_layout
    from tfislr.preprocessing import Preprocess

    num_classes = check_members_agree(members)
    signature = [tf.TensorSpec([None, lm.NUM_RAW_LANDMARKS, 3], tf.float32, name=INPUT_NAME)]

    class EnsembleModule(tf.Module):
        """raw frames [T, 543, 3] -> mean of the members' softmax [num_classes]."""

        def __init__(self):
            super().__init__(name="tfislr_ensemble")
            self.num_classes = num_classes
            self.preprocessors = [m.preprocess for m in members]
            self.models = [m.model for m in members]
            self.weight_values = backing_variables(self.models)
            self.serving_default = tf.function(self._serve, input_signature=signature)
            self.reference = tf.function(self._serve, input_signature=signature)

        def _serve(self, inputs):
            # inf is no measurement either. Preprocess already treats it as missing; a
            # custom `preprocess` gets it as NaN (a SELECT_V2 over all raw frames, which
            # TFLite runs in its reference kernel: skipped when every member has Preprocess).
            frames = inputs
            if not all(isinstance(p, Preprocess) for p in self.preprocessors):
                frames = tf.where(tf.math.is_finite(inputs), inputs,
                                  tf.constant(np.nan, tf.float32))
            probabilities = []
            for preprocess, model in zip(self.preprocessors, self.models):
                points = preprocess(frames)[tf.newaxis]
                # Shape [1, T'] with the batch dim static: the converter can only lower
                # `mask[:, :, None]` (StridedSlice with new_axis_mask) when at most one
                # dim is unknown. `x * 0 + 1` (points are finite) keeps the shape derived
                # from the input's; tf.ones_like becomes a BROADCAST_TO to a computed shape.
                padding_mask = points[:, :, 0, 0] * 0.0 + 1.0
                logits = model({"landmarks": points, "padding_mask": padding_mask},
                               training=False)
                probabilities.append(tf.nn.softmax(tf.cast(logits[0], tf.float32)))
            outputs = probabilities[0] if len(probabilities) == 1 else (
                tf.add_n(probabilities) / float(len(probabilities)))
            return {OUTPUT_NAME: tf.ensure_shape(outputs, [num_classes])}

    module = EnsembleModule()
    with tflite_layout():
        module.serving_default.get_concrete_function()  # traced once, in the export layout
    return module


def _error_scopes(error):
    """Name scopes (e.g. `islr_classifier/embedding/strided_slice`) of the failing ops."""
    scopes = set()
    for data in getattr(error, "errors", None) or ():
        for call in data.location.call:
            scope = call.name.split("@", 1)[0]
            if "@" in call.name and not scope.endswith("PartitionedCall"):
                scopes.add(scope)
                break
    return scopes


def _reraise_conversion_error(error):
    """Turns the converter's wall of MLIR text into one line naming the ops."""
    text = str(error)
    for marker in ("TF Select ops:", "Custom ops:"):
        if marker in text:
            ops = text.split(marker, 1)[1].splitlines()[0].strip()
            # The MLIR locations name the layer that emitted each offending op.
            where = sorted(_error_scopes(error))
            at = f" at {', '.join(where[:6])}{' ...' if len(where) > 6 else ''}" if where else ""
            raise ExportError(
                f"the graph needs non-builtin TFLite ops ({marker[:-1]}: {ops}){at}; only "
                "TFLITE_BUILTINS are allowed in the competition runtime"
            ) from error
    raise ExportError(f"TFLite conversion failed: {text.splitlines()[-1] if text else error}") \
        from error


def convert(module, quantization="fp16", allow_select_tf_ops=False):
    """Converts `module.serving_default` to a TFLite flatbuffer (bytes).

    `allow_select_tf_ops` exists only so tests can produce a Flex model for the
    op guard; exports never set it.
    """
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    concrete = module.serving_default.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if allow_select_tf_ops:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    if quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        # No representative dataset: dynamic-range quantization (int8 weights).
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        return converter.convert()
    except Exception as error:  # the converter raises ConverterError and friends
        _reraise_conversion_error(error)


def model_ops(model_content):
    """Sorted names of the operators in a TFLite flatbuffer; custom ops by their code."""
    from tensorflow.lite.python import schema_py_generated as schema

    builtin_names = {
        value: name for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_")
    }
    model = schema.Model.GetRootAs(bytearray(model_content), 0)
    names = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Codes >= 127 live only in the new field; older ones are mirrored in both.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.CustomCode()
            names.add("CUSTOM:" + (custom.decode() if custom else "?"))
        else:
            names.add(builtin_names.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(names)


# Operators whose output shape comes from the VALUES of these inputs (0-based). With such an
# input not constant, the output is a dynamic tensor: malloc'ed on every call, and the
# interpreter re-plans its memory after the op (see `deberta.tflite_layout`).
_SHAPE_INPUTS = {"RESHAPE": (1,), "SLICE": (1, 2), "STRIDED_SLICE": (1, 2, 3), "RANGE": (0, 1, 2),
                 "PAD": (1,), "PADV2": (1,), "FILL": (0,), "BROADCAST_TO": (1,), "TILE": (1,),
                 "WHERE": (0,)}


def dynamic_shape_ops(model_content):
    """`(op name, output tensor name)` of every op whose output shape depends on run-time
    values (a computed shape, bounds or limit; WHERE always), in graph order."""
    from tensorflow.lite.python import schema_py_generated as schema

    names = {value: name for name, value in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
    model = schema.Model.GetRootAs(bytearray(model_content), 0)
    graph = model.Subgraphs(0)
    found = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        if name not in _SHAPE_INPUTS:
            continue
        inputs = [op.Inputs(k) for k in _SHAPE_INPUTS[name] if k < op.InputsLength()]
        computed = [t for t in inputs
                    if t >= 0 and model.Buffers(graph.Tensors(t).Buffer()).DataLength() == 0]
        if name == "WHERE" or computed:
            found.append((name, graph.Tensors(op.Outputs(0)).Name().decode()))
    return found


def check_builtin_ops(model_content):
    """Raises ExportError naming any Select-TF (Flex) or custom op; returns the op list."""
    ops = model_ops(model_content)
    bad = [op for op in ops if op.startswith("CUSTOM:")]
    if bad:
        flex = [op.split(":", 1)[1] for op in bad if op.startswith("CUSTOM:Flex")]
        kind = "Select TF (Flex)" if flex else "custom"
        raise ExportError(
            f"the TFLite file contains {kind} ops: {', '.join(op.split(':', 1)[1] for op in bad)}; "
            "the competition runtime has TFLITE_BUILTINS only"
        )
    return ops
