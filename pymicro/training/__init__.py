"""Training: networks are fitted in tinygrad and frozen into blobs.

``train`` (the tinygrad fit: early stopping, TinyJit, the network as numpy arrays),
``trainer`` (the seed's MicroNeuralTrainer and ``run_training``: data -> features -> fit ->
freeze -> out-of-sample figures -> store), ``reasoning_loss`` (the reasoning-aware loss and its
ablation) and ``toolchain`` (a C compiler for tinygrad's CPU device where clang is missing).
"""

from pymicro.errors import require as _require

_require("pandas", "train", purpose="pymicro.training")
