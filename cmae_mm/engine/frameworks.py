"""The optional OpenMMLab frameworks, in one table.

``import cmae_mm`` needs MMPretrain only. Each framework of :data:`OPTIONAL_FRAMEWORKS`
is installed by a pip extra of cmae_mm and serves the ``cmae_mm.transfer`` subpackage
of the same name. Two readers:

- :mod:`cmae_mm.transfer` imports that subpackage when the framework imports, and
  otherwise registers its :attr:`~OptionalFramework.placeholders` (construction raises
  :func:`missing_framework_error`);
- :func:`cmae_mm.engine.launch.check_framework` stops a run whose config's
  ``default_scope`` names a framework that does not import.
"""
import importlib
from typing import NamedTuple, Optional, Tuple


class OptionalFramework(NamedTuple):
    """One optional framework.

    Args:
        title: its name in messages, e.g. ``'MMSegmentation'``.
        extra: the pip extra ``cmae_mm[extra]`` that installs it, which is also the
            ``cmae_mm.transfer.<extra>`` subpackage that needs it.
        placeholders: module names that subpackage registers into MMEngine's root
            registry when the framework cannot be imported (names MMPretrain already
            provides need none).
    """
    title: str
    extra: str
    placeholders: Tuple[str, ...] = ()


#: framework module (a config's ``default_scope``) -> what cmae_mm knows about it
OPTIONAL_FRAMEWORKS = {
    # TransferViT / TransferBEiTViT are registered in MMPretrain whatever happens
    'mmseg': OptionalFramework('MMSegmentation', 'seg'),
    'mmdet': OptionalFramework('MMDetection', 'det', ('ViTDet', 'SimpleFPN')),
}


def framework_import_error(module: str) -> Optional[Exception]:
    """The exception raised by ``import module``, or None when it imports.

    Any exception counts: an installed but broken framework (e.g. built against
    another MMCV) fails with more than ``ImportError``."""
    try:
        importlib.import_module(module)
    except Exception as e:
        return e
    return None


def install_hint(module: str) -> str:
    """The sentence telling how to install ``module`` (a key of the table)."""
    extra = OPTIONAL_FRAMEWORKS[module].extra
    return (f"Install the extra: pip install 'cmae_mm[{extra}]' (or pip install -e "
            f"'.[{extra}]' in a clone).")


def missing_framework_error(name: str, module: str, reason: str) -> ImportError:
    """The error raised when ``name`` (a module type in a config) is used without the
    framework ``module``, which failed to import with ``reason``."""
    return ImportError(f'{name} needs {module}, which cannot be imported here '
                       f'({reason}). {install_hint(module)}')
