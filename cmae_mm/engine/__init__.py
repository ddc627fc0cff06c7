"""Training-engine parts (MMEngine registries): checkpoint loading compatibility,
launch on GPUs or CPUs, hooks and optimizer constructors."""
from . import compat  # noqa: F401  (weights-only resume under torch >= 2.6)
from . import hooks, launch, optimizers  # noqa: F401
