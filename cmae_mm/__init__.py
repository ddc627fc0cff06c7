"""cmae_mm: contrastive masked image modeling (CMAE, ConMIM) for OpenMMLab.

Importing the package registers every module into the registry of the framework that
uses it: pretraining and classification parts into MMPretrain, segmentation parts into
MMSegmentation, detection parts into MMDetection. A config needs only
``custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)``.
"""
from . import compat  # noqa: F401  (weights-only resume under torch >= 2.6)
from . import datasets, det, engine, models, seg, utils  # noqa: F401
from .version import __version__

__all__ = ['__version__']
