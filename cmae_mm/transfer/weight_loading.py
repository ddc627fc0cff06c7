"""Initialising downstream backbones from pretraining checkpoints, never silently.

Reading the checkpoint (weights-only), picking an encoder by its prefix
(``backbone.*`` online, ``target_encoder.module.0.*`` target), the finite check and the
checked ``load_state_dict`` live in the checkpoint home,
:mod:`cmae_mm.engine.checkpoint`; this module is the downstream side: the
``PretrainedEncoder`` weight initialiser and the order in which it runs. A missing
tensor raises, naming the keys -- the trap of non-strict ``Pretrained`` loading, which
loads nothing when the prefix is wrong and only logs it (docs/transfer.md).

Downstream models load their encoder with::

    init_cfg=dict(type='PretrainedEncoder', checkpoint='work_dirs/cmae/epoch_300.pth',
                  encoder='online')   # or 'target' (the momentum encoder)

Adaptation to the downstream resolution happens in the module's own
``load_state_dict`` pre-hooks (MMPretrain's ``VisionTransformer`` resizes ``pos_embed``
bicubically, ``BEiTViT`` copies a shared relative position table into every block and
resizes it) or in an ``adapt_pretrained_state_dict(state_dict) -> state_dict`` method
that any backbone may define.
"""
from collections import OrderedDict
from typing import Iterable, List, Optional, Sequence

import torch
from mmengine.model import BaseModule
from mmengine.model.weight_init import initialize, update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from torch import nn

from ..engine.checkpoint import (check_finite, extract_encoder,
                                 load_checkpoint_weights_only, load_state_dict_checked)


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
    check_finite(state_dict, f'The {encoder} encoder of {checkpoint}')
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
