"""Training-engine parts (MMEngine registries): checkpoint loading compatibility and
atomic checkpoints, launch on GPUs or CPUs, hooks, optimizer constructors, the checked
runner."""
from . import compat  # noqa: F401  (weights-only resume under torch >= 2.6)
from . import checkpoint, hooks, launch, optimizers, randomness, runner  # noqa: F401
