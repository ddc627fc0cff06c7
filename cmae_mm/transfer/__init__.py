"""Carrying a pretrained encoder to downstream tasks.

- ``weight_loading``: the ``PretrainedEncoder`` weight initialiser (MMEngine), which
  loads the online or target encoder of a pretraining checkpoint and fails naming any
  tensor it cannot fill;
- ``cls``: ``TransferViT`` / ``TransferBEiTViT`` (MMPretrain; classification and the
  segmentation backbone);
- ``seg``: their registration into MMSegmentation (extra ``cmae_mm[seg]``);
- ``det``: ViTDet backbone and simple feature pyramid (extra ``cmae_mm[det]``).

``seg`` and ``det`` are imported only when their framework can be imported. When it
cannot, the names they provide are registered in MMEngine's root registry as
placeholders whose construction raises an ``ImportError`` naming the extra to install,
so a config that uses them fails with that message instead of "not in the registry".
"""
import importlib

from mmengine.logging import print_log
from mmengine.registry import MODELS

from . import cls, weight_loading  # noqa: F401

#: subpackage -> (framework module, pip extra, module names it registers)
OPTIONAL_PARTS = {
    'seg': ('mmseg', 'seg', ()),  # TransferViT / TransferBEiTViT exist in MMPretrain
    'det': ('mmdet', 'det', ('ViTDet', 'SimpleFPN')),
}
#: subpackage -> None when imported, else the reason it was not
UNAVAILABLE = {}


def missing_framework_error(name: str, framework: str, extra: str,
                            reason: str) -> ImportError:
    """The error raised when ``name`` is used without its framework."""
    return ImportError(
        f'{name} needs {framework}, which cannot be imported here ({reason}). '
        f"Install the extra: pip install 'cmae_mm[{extra}]' (or pip install -e "
        f"'.[{extra}]' in a clone).")


def _placeholder(name: str, framework: str, extra: str, reason: str) -> type:

    def __init__(self, *args, **kwargs):
        raise missing_framework_error(name, framework, extra, reason)

    return type(name, (), {'__init__': __init__, '__module__': __name__})


def _import_optional(part: str) -> None:
    framework, extra, names = OPTIONAL_PARTS[part]
    try:
        importlib.import_module(framework)
    except ImportError as e:
        UNAVAILABLE[part] = f'{type(e).__name__}: {e}'
    except Exception as e:  # installed but broken (e.g. an incompatible mmcv)
        UNAVAILABLE[part] = f'{type(e).__name__}: {e}'
        print_log(
            f'cmae_mm: {framework} is installed but failed to import '
            f'({UNAVAILABLE[part]}); the cmae_mm.transfer.{part} parts are not '
            f'registered.',
            logger='current',
            level=30)
    else:
        importlib.import_module(f'{__name__}.{part}')
        return
    for name in names:
        if name not in MODELS.module_dict:
            MODELS.register_module(
                name=name,
                module=_placeholder(name, framework, extra, UNAVAILABLE[part]))


for _part in OPTIONAL_PARTS:
    _import_optional(_part)
