"""Training-engine parts (MMEngine registries): reading and verifying checkpoints
(``checkpoint``), atomic saving (``checkpoint_saving``), launch on GPUs or CPUs, hooks,
optimizer constructors, the checked runner."""
from . import (checkpoint, checkpoint_saving, hooks, launch, optimizers, randomness,
               runner)

__all__ = [
    'checkpoint', 'checkpoint_saving', 'hooks', 'launch', 'optimizers', 'randomness',
    'runner'
]
