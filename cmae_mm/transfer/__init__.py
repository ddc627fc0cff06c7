"""Carrying a pretrained encoder to downstream tasks.

- ``weight_loading``: the ``PretrainedEncoder`` weight initialiser (MMEngine), which
  loads the online or target encoder of a pretraining checkpoint and fails naming any
  tensor it cannot fill;
- ``backbones``: ``TransferViT`` / ``TransferBEiTViT``, the downstream backbones that
  need MMPretrain only (registered in MMPretrain: classification);
- ``seg``: their registration into MMSegmentation (extra ``cmae_mm[seg]``);
- ``det``: ViTDet backbone and simple feature pyramid (extra ``cmae_mm[det]``).

``seg`` and ``det`` are imported only when their framework can be imported
(:data:`cmae_mm.engine.frameworks.OPTIONAL_FRAMEWORKS`). When it cannot, the names they
provide are registered in MMEngine's root registry as placeholders whose construction
raises an ``ImportError`` naming the extra to install, so a config that uses them fails
with that message instead of "not in the registry".
"""
import importlib

from mmengine.logging import print_log
from mmengine.registry import MODELS

from ..engine.frameworks import (OPTIONAL_FRAMEWORKS, framework_import_error,
                                 missing_framework_error)
from . import backbones, weight_loading  # noqa: F401

#: subpackage (``seg``, ``det``) -> why its framework did not import; absent: imported
UNAVAILABLE = {}


def _placeholder(name: str, module: str, reason: str) -> type:

    def __init__(self, *args, **kwargs):
        raise missing_framework_error(name, module, reason)

    return type(name, (), {'__init__': __init__, '__module__': __name__})


def _import_optional(module: str) -> None:
    """Import the subpackage served by the framework ``module``, or register the
    placeholders of its names."""
    part = OPTIONAL_FRAMEWORKS[module]
    error = framework_import_error(module)
    if error is None:
        importlib.import_module(f'{__name__}.{part.extra}')
        return
    UNAVAILABLE[part.extra] = reason = f'{type(error).__name__}: {error}'
    if not isinstance(error, ImportError):  # installed but broken (incompatible mmcv)
        print_log(
            f'cmae_mm: {module} is installed but failed to import ({reason}); the '
            f'cmae_mm.transfer.{part.extra} parts are not registered.',
            logger='current',
            level=30)
    for name in part.placeholders:
        if name not in MODELS.module_dict:
            MODELS.register_module(name=name, module=_placeholder(name, module, reason))


for _module in OPTIONAL_FRAMEWORKS:
    _import_optional(_module)
