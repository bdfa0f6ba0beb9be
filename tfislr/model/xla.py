"""XLA:CPU settings for the jit-compiled train step (`runtime.jit_compile`).

XLA:CPU's MLIR fusion emitters (its default in TF 2.21) place the key/counter derivation of
a stateless random op (every Keras dropout mask: `StatelessRandomGetKeyCounter` of the seed,
a few hundred scalar integer ops) inside the per-element loop of the fused random-bits
kernel, so it runs once per random number: one `keras.layers.Dropout(0.05)` becomes many
times slower under XLA than without it, and than under XLA with the previous emitters
(`--xla_cpu_use_fusion_emitters=false`); in the len80 mean-teacher step the dropout masks
took most of the step (`python benchmarks/xla_dropout.py`; figures: benchmarks/README.md).
The flag only concerns XLA's CPU backend (GPU and TPU compilation ignore it) and changes
code generation, not the computation.

XLA reads `XLA_FLAGS` once, at the first compilation of the process, so this must run
before any jit-compiled function; a value the user already gave for the flag is kept.
XLA aborts on flags it does not know: the flag exists in the TensorFlow pinned by
requirements.txt (tests/model/test_xla.py compiles with it).
"""

import os

CPU_FUSION_EMITTERS_FLAG = "--xla_cpu_use_fusion_emitters=false"


def use_cpu_loop_emitters():
    """Adds `CPU_FUSION_EMITTERS_FLAG` to `XLA_FLAGS` unless the flag is already set there.

    Returns True when it was added (effective only if XLA has not compiled anything yet
    in this process).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_use_fusion_emitters" in flags:
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {CPU_FUSION_EMITTERS_FLAG}".strip()
    return True
