"""The exported file's contract: signature and tensor names, and the error for a broken file.

The competition runtime calls signature `serving_default` with input `inputs`
float32 `[None, 543, 3]` (raw MediaPipe frames, NaN where nothing was seen) and
reads output `outputs` float32 `[num_classes]` (docs/recipe.md §2).
The graph builder, the checks and every runner use these names.
"""

from tfislr.errors import TfislrError

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "inputs"
OUTPUT_NAME = "outputs"


class ExportError(TfislrError, RuntimeError):
    """A written file breaks the contract: non-builtin op, too big, parity, NaN.

    A user-facing error (`tfislr.errors`): `tfislr-export` reports it as one line, exit 2.
    """
