"""Reading and verifying checkpoints: the one home (docs/checkpoints.md).

Every checkpoint cmae_mm reads is read here, weights-only (no code in a file runs):

- :func:`allow_mmengine_checkpoint_globals`: torch's weights-only allow-list for the
  few non-tensor objects of an MMEngine training checkpoint. Installed explicitly, by
  :func:`load_checkpoint_file`, :func:`verify_checkpoint`, ``CheckedRunner`` and
  ``SafeCheckpointHook.before_run``; code that calls ``torch.load`` or MMEngine's
  ``load_checkpoint`` on our checkpoints by itself calls it first;
- :func:`load_checkpoint_file` / :func:`load_checkpoint_weights_only`: a whole file /
  its state dict, with errors naming the problem and the fix;
- :func:`verify_checkpoint`, :func:`checkpoint_candidates`,
  :func:`find_latest_intact_checkpoint`: whether a file reads back; what ``--resume``
  loads;
- :data:`ENCODER_PREFIXES`, :func:`extract_encoder`: one encoder of a pretraining
  checkpoint, prefix stripped; :func:`non_finite_tensors`, :func:`check_finite`;
- :func:`load_state_dict_checked`: load into a module, failing on missing tensors.

Saving is :mod:`cmae_mm.engine.checkpoint_saving`; the downstream weight initialiser
``PretrainedEncoder`` (:mod:`cmae_mm.transfer.weight_loading`) is built on this module.

Key convention of every cmae_mm pretraining checkpoint (CMAE and ConMIM alike):
``backbone.*`` the online encoder, ``target_encoder.module.0.*`` the target (momentum)
encoder, ``target_encoder.module.1.*`` the target projector.
"""
import argparse
import os
import os.path as osp
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from torch import nn

StateDict = Dict[str, torch.Tensor]

# ---------------------------------------------------------------------------------
# The weights-only allow-list (docs/software_stack.md)
# ---------------------------------------------------------------------------------
# torch >= 2.6 loads with ``weights_only=True`` by default. MMEngine's checkpoints
# hold, besides tensors, the message hub's ``HistoryBuffer`` objects (numpy arrays)
# and numpy scalars, so a resume fails with "Weights only load failed". Instead of
# turning the safety check off, exactly those globals are allow-listed.
# ``HistoryBuffer`` pickles its statistics methods as ``getattr(HistoryBuffer,
# 'mean')``: that ``getattr`` is mapped to :func:`history_buffer_statistic`, which
# returns only those methods (allow-listing the real ``getattr`` would let a file walk
# attributes at will).


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
    """Add :data:`MMENGINE_CHECKPOINT_GLOBALS` to torch's weights-only allow-list.

    Process-wide and idempotent. Importing ``cmae_mm`` does not do it: call it before
    ``torch.load(..., weights_only=True)`` or MMEngine's ``load_checkpoint`` /
    ``Runner.resume`` on an MMEngine checkpoint (the loaders of this module,
    ``CheckedRunner`` and ``SafeCheckpointHook`` do).
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:  # torch >= 2.4
        add(MMENGINE_CHECKPOINT_GLOBALS)


# ---------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------


def _format_problem(filename: str) -> Optional[str]:
    """Why ``filename`` cannot be a ``torch.save`` file (a zip archive; torch < 1.6:
    a pickle), or None."""
    with open(filename, 'rb') as f:
        head = f.read(4)
    if not head:
        return 'an empty file'
    if zipfile.is_zipfile(filename) or head[:1] == b'\x80':
        return None
    if head == b'PK\x03\x04':  # a zip's first entry, without its central directory
        return 'a truncated zip archive'
    return 'neither a zip archive nor a pickle'


def load_checkpoint_file(filename: str, mmap: bool = False) -> dict:
    """Read a whole checkpoint file with ``weights_only=True`` (tensors, plain
    containers, :data:`MMENGINE_CHECKPOINT_GLOBALS` and ``argparse.Namespace``, which
    the BEiT/ConMIM/MAE releases store their command line in).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a PyTorch checkpoint, or a truncated one.
        RuntimeError: the file holds other objects (it is not read: code could run).
        TypeError: the file holds something else than a dict.
    """
    if not osp.isfile(filename):
        raise FileNotFoundError(f'Checkpoint {filename!r} does not exist.')
    allow_mmengine_checkpoint_globals()
    problem = _format_problem(filename)
    if problem == 'a truncated zip archive':
        raise ValueError(
            f'not a complete PyTorch checkpoint: {filename} is {problem}; was it '
            f'truncated by an interrupted copy or save?')
    if problem is not None:
        raise ValueError(
            f'not a PyTorch checkpoint: {filename} ({problem}). Pass the .pth file a '
            f'training run or a converter wrote.')
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(
                filename, map_location='cpu', weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise RuntimeError(
            f'{filename} holds objects other than tensors and plain containers, so '
            f'it cannot be read weights-only (arbitrary code could run). Re-save its '
            f'state dict alone in a trusted environment: torch.save({{"state_dict": '
            f'ckpt["state_dict"]}}, out). Details: {e}') from e
    except Exception as e:  # a truncated archive, a broken pickle
        raise ValueError(
            f'not a complete PyTorch checkpoint: {filename} cannot be read '
            f'({type(e).__name__}: {str(e).strip().splitlines()[0][:200]}); was it '
            f'truncated by an interrupted copy or save?') from e
    if not isinstance(ckpt, dict):
        raise TypeError(f'{filename} holds a {type(ckpt).__name__}, not a state dict.')
    return ckpt


def load_checkpoint_weights_only(filename: str) -> StateDict:
    """The state dict of a checkpoint file, read by :func:`load_checkpoint_file`.

    Accepts MMEngine checkpoints (``{'state_dict': ...}``), plain state dicts and the
    ``{'model': ...}`` layout of the official MAE / CMAE / ConMIM releases.
    """
    ckpt = load_checkpoint_file(filename)
    for key in ('state_dict', 'model', 'module'):
        if key in ckpt and isinstance(ckpt[key], dict):
            return ckpt[key]
    return ckpt


# ---------------------------------------------------------------------------------
# Verifying (what --resume, tools/test.py and the analysis tools check first)
# ---------------------------------------------------------------------------------

CHECKPOINT_RE = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def verify_checkpoint(path: str) -> Optional[str]:
    """None when ``path`` is a complete MMEngine checkpoint that loads weights-only,
    else the reason it is not (empty, truncated, not a checkpoint, ...).

    Installs the allow-list (a caller then loads the file with MMEngine)."""
    try:
        size = osp.getsize(path)
    except OSError as e:
        return f'cannot be read ({e})'
    if size == 0:
        return 'empty file (0 bytes)'
    try:
        ckpt = load_checkpoint_file(path, mmap=True)
    except TypeError:
        return 'not an MMEngine checkpoint (not a dict)'
    except Exception as e:  # truncated zip, bad pickle, not a checkpoint at all
        if e.__cause__ is None and isinstance(e, ValueError):
            return f'does not load ({_format_problem(path)})'
        cause = e.__cause__ or e
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ''
        return (f'does not load ({type(cause).__name__}: '
                f'{first.split(". ")[0][:160]})')
    if 'state_dict' not in ckpt:
        return 'not an MMEngine checkpoint (no state_dict)'
    return None


def checkpoint_candidates(work_dir: str) -> List[str]:
    """The ``epoch_N.pth`` / ``iter_N.pth`` files of ``work_dir``, newest first
    (highest N, then modification time), with the one named in ``last_checkpoint``
    first when that file is readable."""
    if not osp.isdir(work_dir):
        return []
    found = []
    for name in os.listdir(work_dir):
        m = CHECKPOINT_RE.match(name)
        if m:
            path = osp.join(work_dir, name)
            found.append((int(m.group(2)), osp.getmtime(path), path))
    paths = [p for _, _, p in sorted(found, reverse=True)]
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            named = f.read().strip()
        if named and osp.isfile(named) and osp.abspath(named) not in map(
                osp.abspath, paths):
            paths.insert(0, named)
    return paths


def find_latest_intact_checkpoint(
        work_dir: str) -> Tuple[Optional[str], List[Tuple[str, str]]]:
    """``(path or None, [(skipped path, reason), ...])`` of the newest checkpoint in
    ``work_dir`` that loads; newer ones that do not are skipped, with the reason."""
    skipped = []
    for path in checkpoint_candidates(work_dir):
        reason = verify_checkpoint(path)
        if reason is None:
            return path, skipped
        skipped.append((path, reason))
    return None, skipped


# ---------------------------------------------------------------------------------
# Encoders of pretraining checkpoints
# ---------------------------------------------------------------------------------

#: Where each encoder lives in a cmae_mm pretraining checkpoint.
ENCODER_PREFIXES = {
    'online': 'backbone.',
    'target': 'target_encoder.module.0.',
}


def extract_encoder(state_dict: StateDict,
                    encoder: str = 'online') -> 'OrderedDict[str, torch.Tensor]':
    """Return the encoder's tensors with their prefix stripped.

    Args:
        state_dict: a pretraining model's state dict (keys as in the module docstring).
        encoder: ``'online'`` or ``'target'``.

    Raises:
        KeyError: when ``encoder`` is unknown or no key carries its prefix; the message
            lists the top-level prefixes the state dict does have.
    """
    if encoder not in ENCODER_PREFIXES:
        raise KeyError(f'encoder must be one of {sorted(ENCODER_PREFIXES)}, '
                       f'got {encoder!r}.')
    prefix = ENCODER_PREFIXES[encoder]
    out = OrderedDict(
        (k[len(prefix):], v) for k, v in state_dict.items() if k.startswith(prefix))
    if not out:
        found = sorted({k.split('.')[0] + '.' for k in state_dict})
        raise KeyError(
            f'No key starts with {prefix!r} (the {encoder} encoder); the checkpoint '
            f'has top-level prefixes {found}. Is it a cmae_mm pretraining checkpoint? '
            f'Convert other formats with tools/model_converters first.')
    return out


def non_finite_tensors(state_dict: StateDict) -> List[str]:
    """Keys of the floating-point tensors holding a NaN or an inf."""
    return [
        k for k, v in state_dict.items()
        if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()
    ]


def check_finite(state_dict: StateDict, what: str) -> None:
    """Raise ``ValueError`` naming the tensors of ``state_dict`` (``what``, e.g. 'the
    online encoder of CKPT') that hold a NaN or an inf."""
    bad = non_finite_tensors(state_dict)
    if bad:
        raise ValueError(
            f'{what} has non-finite values (NaN or inf) in {len(bad)} tensors: '
            f'{bad[:10]}{" ..." if len(bad) > 10 else ""}. The pretraining diverged '
            f'before this checkpoint; use an earlier one.')


def load_state_dict_checked(module: nn.Module,
                            state_dict: StateDict,
                            allowed_missing: Iterable[str] = (),
                            name: Optional[str] = None) -> None:
    """Load ``state_dict`` into ``module``; fail when a tensor of ``module`` is missing.

    Args:
        module: the module to fill.
        state_dict: tensors keyed as in ``module.state_dict()``.
        allowed_missing: regular expressions (``re.search``, so a plain substring works;
            anchor with ``^`` for a top-level name such as ``'^ln2\\.'``) of keys the
            caller initialises itself (for example a new norm or relative position
            index buffers); every other missing key is an error.
        name: how to call the module in messages.

    Unexpected keys (tensors the module does not use, such as a dropped final norm) are
    reported, not fatal. Shape mismatches raise, as in ``load_state_dict``. This is the
    trap of non-strict ``Pretrained`` loading, which loads nothing when the prefix is
    wrong and only logs it (docs/transfer.md), closed.
    """
    name = name or type(module).__name__
    allowed = tuple(allowed_missing)
    result = module.load_state_dict(state_dict, strict=False)
    missing = [
        k for k in result.missing_keys if not any(re.search(a, k) for a in allowed)
    ]
    if missing:
        raise KeyError(
            f'{name}: {len(missing)} tensors were not found in the checkpoint: '
            f'{missing[:20]}{" ..." if len(missing) > 20 else ""}. The checkpoint does '
            f'not hold this encoder (wrong prefix or architecture?).')
    loaded = len(state_dict) - len(result.unexpected_keys)
    print_log(
        f'{name}: loaded {loaded} tensors; initialised here: '
        f'{len(result.missing_keys)}; unused from the checkpoint: '
        f'{result.unexpected_keys}',
        logger='current')
