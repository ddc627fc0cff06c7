"""cmae_mm: contrastive masked image modeling (CMAE, ConMIM) for OpenMMLab.

Importing the package registers its modules into the registry of the framework that
uses them. It needs MMPretrain (and MMEngine, MMCV) only:

- ``engine``: weights-only resume support, the CPU/GPU launch helper, hooks and the
  layer-decay optimizer constructor (MMEngine registries);
- ``datasets`` and ``models``: the pretraining views and algorithms (MMPretrain);
- ``transfer``: downstream backbones and checked weight loading; its MMSegmentation
  (``transfer.seg``) and MMDetection (``transfer.det``) parts register themselves when
  those frameworks can be imported (extras ``cmae_mm[seg]`` and ``cmae_mm[det]``).

A config needs only
``custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)``.
The layout is described in ``docs/architecture.md``.
"""
from . import engine  # noqa: F401  (first: weights-only resume allow-list)
from . import datasets, evaluation, models, transfer  # noqa: F401
from .version import __version__

__all__ = ['__version__']
