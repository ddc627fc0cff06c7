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
- :func:`load_state_dict_checked`: load into a module, failing on missing tensors;
- :func:`check_model_checkpoint`, :func:`load_model_checkpoint`,
  :class:`CheckedLoadHook`: a whole model for evaluation, strictly: a checkpoint of
  another model or with non-finite tensors raises :class:`CheckpointError`.

Saving is :mod:`cmae_mm.engine.checkpoint_saving`; the downstream weight initialiser
``PretrainedEncoder`` (:mod:`cmae_mm.transfer.weight_loading`) is built on this module.

Key convention of every cmae_mm pretraining checkpoint (CMAE and ConMIM alike):
``backbone.*`` the online encoder, ``target_encoder.module.0.*`` the target (momentum)
encoder, ``target_encoder.module.1.*`` the target projector.
"""
import argparse
import logging
import os
import os.path as osp
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer, print_log
from mmengine.model import is_model_wrapper
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


# -- last_checkpoint (issue 21): a path relative to the work dir -------------------
def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``work_dir/last_checkpoint`` names, or None (no file, empty).

    cmae_mm writes it relative to the work dir
    (:func:`~cmae_mm.engine.checkpoint_saving.write_last_checkpoint`), so a copied or
    moved work dir names its own files. An absolute path (MMEngine, older cmae_mm)
    is still read; when it points outside ``work_dir`` a warning says so, and a file
    of the same name in ``work_dir`` (a copied work dir) is taken instead."""
    last = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(last):
        return None
    with open(last) as f:
        named = f.read().strip()
    if not named or '://' in named:  # a remote out_dir: not for the local reader
        return None
    if not osp.isabs(named):
        return osp.join(work_dir, named)
    inside = osp.commonpath([osp.realpath(work_dir), osp.realpath(osp.dirname(named))])
    if inside == osp.realpath(work_dir):
        return named
    own = osp.join(work_dir, osp.basename(named))
    use = own if osp.isfile(own) else named
    print_log(
        f'{last} names {named}, outside the work dir (an absolute path written by '
        f'an older cmae_mm or by MMEngine; was the work dir copied or moved?): '
        f'using {use}. Saves from now on write a path relative to the work dir.',
        logger='current',
        level=logging.WARNING)
    return use


def checkpoint_candidates(work_dir: str) -> List[str]:
    """The ``epoch_N.pth`` / ``iter_N.pth`` files of ``work_dir``, newest first
    (highest N, then modification time), with the one named in ``last_checkpoint``
    (:func:`read_last_checkpoint`) first when that file is readable."""
    if not osp.isdir(work_dir):
        return []
    found = []
    for name in os.listdir(work_dir):
        m = CHECKPOINT_RE.match(name)
        if m:
            path = osp.join(work_dir, name)
            found.append((int(m.group(2)), osp.getmtime(path), path))
    paths = [p for _, _, p in sorted(found, reverse=True)]
    named = read_last_checkpoint(work_dir)
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


class CheckpointError(ValueError):
    """A checkpoint that reads back but cannot be used as asked: another model's, or
    one with non-finite tensors. The message names the problem and the fix."""


def non_finite_tensors(state_dict: StateDict) -> List[str]:
    """Keys of the floating-point tensors holding a NaN or an inf."""
    return [
        k for k, v in state_dict.items()
        if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()
    ]


def describe_non_finite(bad: List[str]) -> str:
    """``'non-finite values (NaN or inf) in N tensors: [...]'`` (the first ten)."""
    return (f'non-finite values (NaN or inf) in {len(bad)} tensors: '
            f'{bad[:10]}{" ..." if len(bad) > 10 else ""}')


DIVERGED = 'The pretraining diverged before this checkpoint; use an earlier one.'


def check_finite(state_dict: StateDict, what: str, fix: str = DIVERGED) -> None:
    """Raise :class:`CheckpointError` (a ``ValueError``) naming the tensors of
    ``state_dict`` (``what``, e.g. 'the online encoder of CKPT') that hold a NaN or an
    inf; ``fix`` ends the message."""
    bad = non_finite_tensors(state_dict)
    if bad:
        raise CheckpointError(f'{what} has {describe_non_finite(bad)}. {fix}')


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


# ---------------------------------------------------------------------------------
# Whole models, for evaluation (tools/test.py, knn_eval.py, the figures)
# ---------------------------------------------------------------------------------
# MMEngine's ``load_from`` loads non-strictly: a checkpoint of another model loads
# what happens to fit and only logs the rest, so a ConMIM checkpoint evaluated with a
# CMAE config gives numbers. The evaluation tools load through the check below.


def model_checkpoint_problems(model: nn.Module, state_dict: StateDict) -> List[str]:
    """What keeps ``state_dict`` from loading strictly into ``model``: the resume
    check's :func:`model_mismatch` (missing parameters,
    unexpected tensors, differing shapes), plus the model's buffers it lacks (running
    statistics an evaluation would otherwise take from the initialisation)."""
    problems = model_mismatch(model, state_dict)
    saved = {re.sub(r'^module\.', '', k) for k in state_dict}
    params = {n for n, _ in model.named_parameters()}
    buffers = [
        k for k, v in model.state_dict().items()
        if torch.is_tensor(v) and k not in params and k not in saved
        and not k.endswith('_extra_state')  # e.g. the mask generator's state
    ]
    if buffers:
        problems.append(f'{len(buffers)} of the model\'s buffers are not in the '
                        f'checkpoint: {_examples(buffers)}')
    return problems


def _examples(items: List[str], n: int = 5) -> str:
    return ', '.join(
        items[:n]) + (f', ... ({len(items)} in all)' if len(items) > n else '')


def model_mismatch(model: torch.nn.Module, state_dict: dict) -> List[str]:
    """What keeps ``state_dict`` (a checkpoint's, ``module.`` prefixes allowed) from
    being ``model``'s: model parameters it lacks, keys the model lacks, shapes that
    differ (a few of each, with counts); ``[]`` when it fits. Non-tensor entries
    (``_extra_state``) and model buffers missing from the checkpoint are ignored
    (MMEngine warns about the latter)."""
    saved = {
        re.sub(r'^module\.', '', k): tuple(v.shape)
        for k, v in state_dict.items() if isinstance(v, torch.Tensor)
    }
    own_state = model.state_dict()
    own_keys = set(own_state)
    own = {
        k: tuple(v.shape)
        for k, v in own_state.items() if isinstance(v, torch.Tensor)
    }
    params = [n for n, _ in model.named_parameters()]
    missing = [k for k in params if k not in saved]
    unexpected = sorted(k for k in saved if k not in own_keys)
    shapes = [
        f'{k}: checkpoint {list(saved[k])} vs model {list(own[k])}' for k in own
        if k in saved and saved[k] != own[k]
    ]
    problems = []
    if missing:
        problems.append(f'{len(missing)} of the model\'s {len(params)} parameters '
                        f'are not in the checkpoint: {_examples(missing)}')
    if unexpected:
        problems.append(f'{len(unexpected)} of the checkpoint\'s {len(saved)} tensors '
                        f'are not in the model: {_examples(unexpected)}')
    if shapes:
        problems.append(f'{len(shapes)} shapes differ: {_examples(shapes, 3)}')
    return problems


def describe_saved_config(meta: dict) -> str:
    """``'<config name> (model <type>)'`` of a checkpoint's ``meta``."""
    name = re.sub(r'_\d{8}_\d{6}$', '', str(meta.get('experiment_name', '?')))
    model_type = '?'
    if isinstance(meta.get('cfg'), str):
        try:
            model_type = Config.fromstring(
                meta['cfg'], file_format='.py').model.get('type', '?')
        except Exception:  # a saved config that does not parse: regex
            m = re.search(r"model\s*=\s*dict\(\s*type\s*=\s*'([^']+)'", meta['cfg'])
            model_type = m.group(1) if m else '?'
    return f'{name}.py (model {model_type})'


def _describe_source(meta: dict) -> str:
    """Which run or tool wrote a checkpoint, from its ``meta``."""
    if isinstance(meta.get('cfg'), str) or meta.get('experiment_name'):
        return f'it was saved by a run of {describe_saved_config(meta)}'
    if meta.get('converter'):
        return f'it was written by {meta["converter"]} (no saved config)'
    return 'it has no saved config'


def check_model_checkpoint(model: nn.Module,
                           checkpoint: dict,
                           filename: str,
                           config: Optional[str] = None) -> None:
    """Refuse to evaluate ``model`` with ``checkpoint`` unless it is a checkpoint of
    this very model (:func:`model_checkpoint_problems`) with finite tensors.

    Args:
        model: the built model (unwrapped).
        checkpoint: the loaded file: MMEngine's ``{'state_dict', 'meta'}`` or a plain
            state dict (as MMEngine's ``load_checkpoint`` reads it).
        filename: the checkpoint's path, for the message.
        config: the current config's file name, for the message.

    Raises:
        CheckpointError: naming the missing / unexpected keys and differing shapes
            (counts and examples), the checkpoint's config and model type (its
            ``meta``) and the current ones, and the non-finite tensors.
    """
    state_dict = checkpoint.get('state_dict', checkpoint)
    problems = model_checkpoint_problems(model, state_dict)
    bad = non_finite_tensors(state_dict)
    if not problems and not bad:
        return
    here = f'{config or "this config"} (model {type(model).__name__})'
    parts = []
    if problems:
        meta = checkpoint.get('meta')
        parts.append(
            f'{filename} is not a checkpoint of the model of {here}: '
            f'{_describe_source(meta if isinstance(meta, dict) else {})}. '
            f'{". ".join(problems)}. Pass the config the checkpoint was trained '
            f'with, or a checkpoint of {config or "this config"}')
    if bad:
        parts.append(f'{filename} has {describe_non_finite(bad)}: its run diverged '
                     f'before it was saved; evaluate an earlier checkpoint')
    raise CheckpointError('. '.join(parts) + '.')


def load_model_checkpoint(model: nn.Module,
                          filename: str,
                          config: Optional[str] = None) -> dict:
    """Read ``filename`` weights-only, check it (:func:`check_model_checkpoint`) and
    load it into ``model``; returns the checkpoint. Every tensor of the model is
    loaded (the check refuses anything a strict ``load_state_dict`` refuses; a
    missing ``_extra_state``, such as CMAE's mask generator state, keeps the
    model's)."""
    checkpoint = load_checkpoint_file(filename)
    check_model_checkpoint(model, checkpoint, filename, config)
    state_dict = checkpoint.get('state_dict', checkpoint)
    model.load_state_dict(
        OrderedDict((re.sub(r'^module\.', '', k), v) for k, v in state_dict.items()),
        strict=False)
    return checkpoint


class CheckedLoadHook(Hook):
    """Makes a runner's ``load_from`` load strictly: the checkpoint MMEngine has just
    read is checked against the runner's model (:func:`check_model_checkpoint`)
    before MMEngine loads it (non-strictly) and before any other hook sees it; a
    checkpoint of another model or with non-finite tensors stops the run with
    :class:`CheckpointError`, also written to the log.

    The evaluation tools register it on the runner they build::

        runner.register_hook(CheckedLoadHook(), 'HIGHEST')
    """

    priority = 'HIGHEST'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        filename = runner.cfg.get('load_from') or 'the checkpoint'
        config = osp.basename(runner.cfg.filename) if runner.cfg.filename else None
        try:
            check_model_checkpoint(model, checkpoint, filename, config)
        except CheckpointError as e:
            runner.logger.error(str(e))
            raise
