"""Resuming MMEngine 0.10.7 checkpoints under torch >= 2.6 with weights-only loading on.

torch >= 2.6 loads checkpoints with ``weights_only=True`` by default. MMEngine's
checkpoints hold, besides tensors, the message hub's ``HistoryBuffer`` objects (whose
state is numpy arrays) and numpy scalars, so ``--resume`` fails with
"Weights only load failed". Instead of turning the safety check off, this module adds
exactly those globals to torch's allow-list (docs/software_stack.md). Importing
``cmae_mm`` applies it.

``HistoryBuffer`` pickles its statistics methods as ``getattr(HistoryBuffer, 'mean')``,
so the checkpoints also name the builtin ``getattr``. Allow-listing the real ``getattr``
would let a file walk attributes at will; that name is mapped instead to
:func:`history_buffer_statistic`, which only returns ``HistoryBuffer``'s registered
statistics methods and refuses anything else.
"""
from typing import Callable

import numpy as np
import torch
from mmengine.logging import HistoryBuffer


def _numpy_globals() -> list:
    # ndarray reconstruction and dtypes, as pickled by numpy 1.x and 2.x.
    if np.lib.NumpyVersion(np.__version__) >= '2.0.0':
        from numpy._core import multiarray
    else:
        from numpy.core import multiarray
    globals_ = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    # numpy >= 1.25 pickles dtypes as instances of their ``np.dtypes`` classes.
    if hasattr(np, 'dtypes'):
        globals_ += [
            type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64,
                                        np.int32, np.int16, np.int8, np.uint8, np.bool_)
        ]
    return globals_


def history_buffer_statistic(owner: type, name: str) -> Callable:
    """The only ``getattr`` a weights-only load may perform: a statistics method of
    ``HistoryBuffer`` (``min``, ``max``, ``current``, ``mean`` or a registered one)."""
    if owner is not HistoryBuffer or not isinstance(
            name, str) or not (name in HistoryBuffer._statistics_methods
                               or name in ('min', 'max', 'current', 'mean')):
        raise ValueError(
            f'Refusing getattr({getattr(owner, "__name__", owner)!r}, {name!r}) while '
            'loading weights-only: only HistoryBuffer statistics methods are allowed.')
    return getattr(HistoryBuffer, name)


#: The globals an MMEngine training checkpoint holds besides tensors and builtins.
MMENGINE_CHECKPOINT_GLOBALS = [HistoryBuffer] + _numpy_globals() + [
    (history_buffer_statistic, '__builtin__.getattr'),
    (history_buffer_statistic, 'builtins.getattr'),
]


def allow_mmengine_checkpoint_globals() -> None:
    """Allow-list :data:`MMENGINE_CHECKPOINT_GLOBALS` for ``torch.load``."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:  # torch >= 2.4
        add(MMENGINE_CHECKPOINT_GLOBALS)


allow_mmengine_checkpoint_globals()
