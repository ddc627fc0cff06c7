"""Loading encoders out of pretraining checkpoints, never silently.

Key convention of every cmae_mm pretraining checkpoint (CMAE and ConMIM alike):

- ``backbone.*``                  the online encoder (trained by gradient);
- ``target_encoder.module.0.*``   the target (momentum / EMA) encoder;
- ``target_encoder.module.1.*``   the target projector.

``extract_encoder`` strips one of those prefixes; ``load_state_dict_checked`` loads the
result and raises, naming the keys, when the module would be left with any tensor not
loaded -- the trap of non-strict ``Pretrained`` loading, which loads nothing when the
prefix is wrong and only logs it (docs/transfer.md).

Downstream models load their encoder with the ``PretrainedEncoder`` weight initialiser::

    init_cfg=dict(type='PretrainedEncoder', checkpoint='work_dirs/cmae/epoch_300.pth',
                  encoder='online')   # or 'target' (the momentum encoder)

Adaptation to the downstream resolution happens in the module's own
``load_state_dict`` pre-hooks (MMPretrain's ``VisionTransformer`` resizes ``pos_embed``
bicubically, ``BEiTViT`` copies a shared relative position table into every block and
resizes it) or in an ``adapt_pretrained_state_dict(state_dict) -> state_dict`` method
that any backbone may define.
"""
import argparse
import os.path as osp
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import initialize, update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from torch import nn

ENCODER_PREFIXES = {
    'online': 'backbone.',
    'target': 'target_encoder.module.0.',
}


def load_checkpoint_file(filename: str) -> dict:
    """Read a whole checkpoint file with ``weights_only=True`` (tensors, plain
    containers and the globals allow-listed by ``cmae_mm.engine.compat``).

    Raises:
        FileNotFoundError: no such file.
        RuntimeError: the file holds other objects (it is not read: code could run).
        TypeError: the file holds something else than a dict.
    """
    if not osp.isfile(filename):
        raise FileNotFoundError(f'Checkpoint {filename!r} does not exist.')
    with open(filename, 'rb') as f:
        head = f.read(4)
    # torch.save writes a zip archive; files of torch < 1.6 are plain pickles
    if not (zipfile.is_zipfile(filename) or head[:1] == b'\x80'):
        raise ValueError(
            f'not a PyTorch checkpoint: {filename} ('
            f'{"an empty file" if not head else "neither a zip archive nor a pickle"}'
            f'). Pass the .pth file a training run or a converter wrote.')
    try:
        # argparse.Namespace: the BEiT/ConMIM/MAE releases store their command line
        # in 'args'; it is plain attribute storage, safe to rebuild.
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(filename, map_location='cpu', weights_only=True)
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


def load_checkpoint_weights_only(filename: str) -> Dict[str, torch.Tensor]:
    """Load a checkpoint file with ``weights_only=True`` and return its state dict.

    Accepts MMEngine checkpoints (``{'state_dict': ...}``), plain state dicts and the
    ``{'model': ...}`` layout of the official MAE / CMAE / ConMIM releases.
    """
    ckpt = load_checkpoint_file(filename)
    for key in ('state_dict', 'model', 'module'):
        if key in ckpt and isinstance(ckpt[key], dict):
            return ckpt[key]
    return ckpt


def extract_encoder(state_dict: Dict[str, torch.Tensor],
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
            f'has '
            f'top-level prefixes {found}. Is it a cmae_mm pretraining checkpoint? '
            f'Convert '
            f'other formats with tools/model_converters first.')
    return out


def load_state_dict_checked(module: nn.Module,
                            state_dict: Dict[str, torch.Tensor],
                            allowed_missing: Iterable[str] = (),
                            name: Optional[str] = None) -> None:
    """Load ``state_dict`` into ``module``; fail when a tensor of ``module`` is missing.

    Args:
        module: the module to fill.
        state_dict: tensors keyed as in ``module.state_dict()``.
        allowed_missing: regular expressions (``re.search``, so a plain substring works;
            anchor with ``^`` for a top-level name such as ``'^ln2\\.'``) of keys the
            caller
            initialises itself (for example a new norm or relative position index
            buffers); every other missing key is an error.
        name: how to call the module in messages.

    Unexpected keys (tensors the module does not use, such as a dropped final norm) are
    reported, not fatal. Shape mismatches raise, as in ``load_state_dict``.
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


def load_pretrained_encoder(
        module: nn.Module,
        checkpoint: str,
        encoder: str = 'online',
        allowed_missing: Iterable[str] = (),
        name: Optional[str] = None) -> 'OrderedDict[str, torch.Tensor]':
    """Load one encoder of a cmae_mm pretraining checkpoint into ``module``.

    Steps: weights-only load of ``checkpoint``; ``extract_encoder(..., encoder)``;
    ``module.adapt_pretrained_state_dict(state_dict)`` when the module defines it;
    ``load_state_dict_checked`` (the module's ``load_state_dict`` pre-hooks resize
    position embeddings / relative position tables on the way).

    Returns:
        The encoder state dict that was handed to ``load_state_dict`` (before the
        module's pre-hooks), for callers that want to verify the load.
    """
    if not checkpoint:
        raise ValueError(
            'PretrainedEncoder got no checkpoint. Pass a cmae_mm pretraining '
            'checkpoint with `--cfg-options model.backbone.init_cfg.checkpoint=PATH` '
            '(or the `pretrained` variable at the top of the config), or set '
            '`model.backbone.init_cfg=None` to train from scratch.')
    state_dict = extract_encoder(load_checkpoint_weights_only(checkpoint), encoder)
    bad = [
        k for k, v in state_dict.items()
        if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if bad:
        raise ValueError(
            f'The {encoder} encoder of {checkpoint} has non-finite values (NaN or inf) '
            f'in {len(bad)} tensors: {bad[:10]}{" ..." if len(bad) > 10 else ""}. The '
            f'pretraining diverged before this checkpoint; use an earlier one.')
    adapt = getattr(module, 'adapt_pretrained_state_dict', None)
    if callable(adapt):
        state_dict = adapt(state_dict)
    load_state_dict_checked(
        module,
        state_dict,
        allowed_missing,
        name=f'{name or type(module).__name__} <- {encoder} encoder of {checkpoint}')
    return state_dict


@WEIGHT_INITIALIZERS.register_module()
class PretrainedEncoder:
    """Weight initialiser: the online or target encoder of a pretraining checkpoint.

    Args:
        checkpoint (str): path of a cmae_mm pretraining checkpoint (or of an
            encoder-only file written by ``tools/model_converters``). Overridable with
            ``--cfg-options model.backbone.init_cfg.checkpoint=PATH``.
        encoder (str): ``'online'`` (``backbone.*``) or ``'target'``
            (``target_encoder.module.0.*``, the momentum encoder).
        allowed_missing (Sequence[str]): regular expressions of module keys that the
            checkpoint need not hold (new norms, index buffers); any other missing key
            raises ``KeyError`` naming it.

    MMEngine runs initialisers other than ``'Pretrained'`` *before* the children's
    ``init_weights`` (mmengine issue 691). So that the loaded tensors are not
    overwritten, this initialiser marks every sub-module it loaded into as
    initialised. A module whose own ``init_weights`` changes parameters after
    ``super().init_weights()`` (MMPretrain's ViTs re-draw ``pos_embed``) must apply it
    last: inherit :class:`PretrainedEncoderInitMixin` first.
    """

    def __init__(self,
                 checkpoint: str,
                 encoder: str = 'online',
                 allowed_missing: Sequence[str] = ()) -> None:
        self.checkpoint = checkpoint
        self.encoder = encoder
        self.allowed_missing = tuple(allowed_missing)

    def __call__(self, module: nn.Module) -> None:
        load_pretrained_encoder(module, self.checkpoint, self.encoder,
                                self.allowed_missing)
        for sub in module.modules():
            if sub is not module and isinstance(sub, BaseModule):
                sub._is_init = True
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self) -> str:
        return (f'{self.__class__.__name__}: {self.encoder} encoder of '
                f'{self.checkpoint}')


def _is_pretrained_encoder_cfg(cfg: dict) -> bool:
    return cfg.get('type') in ('PretrainedEncoder', PretrainedEncoder)


class PretrainedEncoderInitMixin:
    """Apply ``PretrainedEncoder`` init_cfgs after the module's own ``init_weights``.

    Put it first in the bases of a ``BaseModule`` backbone
    (``class MyViT(PretrainedEncoderInitMixin, VisionTransformer)``): the module and
    its children are initialised as usual, then the encoder is loaded over them, as
    MMEngine does for its own ``'Pretrained'`` type.
    """

    def init_weights(self) -> None:
        init_cfg = self.init_cfg
        cfgs: List[dict] = ([init_cfg]
                            if isinstance(init_cfg, dict) else list(init_cfg or []))
        late = [c for c in cfgs if _is_pretrained_encoder_cfg(c)]
        if not late:
            return super().init_weights()
        rest = [c for c in cfgs if not _is_pretrained_encoder_cfg(c)]
        self.init_cfg = rest or None
        try:
            super().init_weights()
        finally:
            self.init_cfg = init_cfg
        initialize(self, late)
