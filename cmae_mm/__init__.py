"""cmae_mm: contrastive masked image modeling (CMAE, ConMIM) for OpenMMLab.

Importing the package registers its modules into the registry of the framework that
uses them. It needs MMPretrain (and MMEngine, MMCV) only:

- ``engine``: reading, verifying and atomically saving checkpoints, the checked
  runner, the CPU/GPU launch helper, hooks and the layer-decay optimizer constructor
  (MMEngine registries);
- ``datasets`` and ``models``: the pretraining views and algorithms (MMPretrain);
- ``transfer``: downstream backbones and checked weight loading; its MMSegmentation
  (``transfer.seg``) and MMDetection (``transfer.det``) parts register themselves when
  those frameworks can be imported (extras ``cmae_mm[seg]`` and ``cmae_mm[det]``).

Importing does nothing else: torch's weights-only allow-list for MMEngine checkpoints
is installed by the code that reads them, not at import
(:func:`cmae_mm.engine.checkpoint.allow_mmengine_checkpoint_globals`).

A config needs only
``custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)``.
The layout is described in ``docs/architecture.md``.
"""
from . import datasets, engine, evaluation, models, transfer  # noqa: F401
from .version import __version__

__all__ = ['__version__']
