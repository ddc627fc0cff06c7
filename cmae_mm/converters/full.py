"""Whole pretraining checkpoints: the official CMAE and MAE releases <-> cmae_mm.

Unlike :mod:`cmae_mm.converters.encoders` (one encoder, for downstream use), these
convert every tensor of a pretraining model, so that pretraining can continue
(docs/converters.md). Every tensor is accounted for: a source tensor with no place
raises, a model tensor that the source does not provide raises unless it is one of the
few listed in ``FILLED`` (filled, and reported).

Official CMAE layout (github.com/ZhichengHuang/CMAE, cmae/models/algorithms/cmae.py):
``backbone`` (online CMAEViT), ``target_backbone`` (CMAEViT without final norm),
``pixel_decoder`` and ``feature_decoder`` (MAEPretrainDecoder), ``projector`` and
``target_projector`` (NonLinearNeck), ``head.predictor`` (NonLinearNeck). Their
module keys are MMPretrain's (``layers.N.{ln1, attn.qkv, attn.proj, ln2,
ffn.layers.0.0, ffn.layers.1}``, final norm ``ln1``, decoder norm ``ln1``).
"""
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch

from .encoders import (IMAGENET_RGB_MEAN, IMAGENET_RGB_STD, _rename_timm,
                       fix_bgr_patch_embed)

StateDict = Dict[str, torch.Tensor]

#: official CMAE prefix -> cmae_mm CMAE prefix
CMAE_PREFIXES = OrderedDict([
    ('backbone.', 'backbone.'),
    ('target_backbone.', 'target_encoder.module.0.'),
    ('pixel_decoder.', 'neck.'),
    ('feature_decoder.', 'feature_decoder.'),
    ('projector.', 'projector.'),
    ('target_projector.', 'target_encoder.module.1.'),
    ('head.predictor.', 'contrastive_head.predictor.'),
])
#: cmae_mm CMAE tensors that the official layout has no counterpart for
FILLED = {
    # the released target encoder has no final norm (final_norm=False); ours keeps
    # the copied LayerNorm, which its forward_target never uses
    'target_encoder.module.0.ln1.weight': 'backbone.ln1.weight',
    'target_encoder.module.0.ln1.bias': 'backbone.ln1.bias',
}
PATCH_EMBED = ('patch_embed.projection.weight', 'patch_embed.projection.bias')


def unfix_bgr_patch_embed(weight: torch.Tensor,
                          bias: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`~cmae_mm.converters.encoders.fix_bgr_patch_embed`: a patch
    embedding for RGB input back to the release's BGR-ordered input."""
    m = torch.tensor(IMAGENET_RGB_MEAN, dtype=torch.float64)
    s = torch.tensor(IMAGENET_RGB_STD, dtype=torch.float64)
    perm = [2, 1, 0]
    w = weight.double()
    # w'[:, d] = w[:, 2-d] s_d / s_{2-d}  =>  w[:, c] = w'[:, 2-c] s_c / s_{2-c}
    old_w = w[:, perm] * (s / s[perm]).view(1, 3, 1, 1)
    old_b = bias.double() - (old_w * ((m[perm] - m) / s).view(1, 3, 1, 1)).sum(
        (1, 2, 3))
    return old_w.to(weight.dtype), old_b.to(bias.dtype)


def swap_pixel_channels(weight: torch.Tensor,
                        bias: torch.Tensor,
                        in_chans: int = 3) -> Tuple[torch.Tensor, torch.Tensor]:
    """Reverse the colour order of a pixel decoder's output Linear.

    The output of ``decoder_pred`` is a patch flattened as (pixel, channel) with the
    channel fastest (MMPretrain's ``MAEPretrainHead.patchify``), so output row
    ``3 k + c`` becomes ``3 k + (2 - c)``. Its own inverse.
    """
    rows = weight.shape[0]
    if rows % in_chans:
        raise ValueError(f'decoder_pred has {rows} outputs, not a multiple of '
                         f'{in_chans} channels.')
    order = torch.arange(rows).view(-1, in_chans).flip(1).reshape(-1)
    return weight[order].clone(), bias[order].clone()


def _convert_colour(state_dict: StateDict, encoder_prefixes: List[str],
                    decoder_prefix: Optional[str], to_rgb: bool) -> None:
    fix = fix_bgr_patch_embed if to_rgb else unfix_bgr_patch_embed
    for prefix in encoder_prefixes:
        w, b = (prefix + k for k in PATCH_EMBED)
        state_dict[w], state_dict[b] = fix(state_dict[w], state_dict[b])
    if decoder_prefix is not None:
        w, b = (decoder_prefix + 'decoder_pred.' + k for k in ('weight', 'bias'))
        state_dict[w], state_dict[b] = swap_pixel_channels(state_dict[w], state_dict[b])


def cmae_official_to_cmae_mm(official: StateDict,
                             reference: StateDict,
                             bgr_fix: bool = True,
                             steps: int = 0,
                             mask_seed: int = 0) -> Tuple[StateDict, Dict[str, list]]:
    """An official CMAE pretraining state dict -> a cmae_mm ``CMAE`` state dict.

    Args:
        official: the release's model state dict (``checkpoint['state_dict']``).
        reference: ``model.state_dict()`` of the cmae_mm CMAE it is for (the keys and
            shapes every output tensor must have).
        bgr_fix: re-express both encoders' patch embeddings for RGB input and put the
            pixel decoder's output channels in RGB order (docs/converters.md).
        steps: the number of target updates done (the release's iteration count).
        mask_seed: the mask seed of ``_extra_state`` (not in the release; the mask
            draws count from 0).

    Returns:
        ``(state_dict, report)``; ``report`` lists ``filled`` and ``colour`` keys.

    Raises:
        KeyError: an official tensor with no place, or a cmae_mm tensor not provided.
        ValueError: a shape mismatch.
    """
    out, unknown = OrderedDict(), []
    for key, value in official.items():
        for src, dst in CMAE_PREFIXES.items():
            if key.startswith(src):
                out[dst + key[len(src):]] = value.clone()
                break
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(
            f'official CMAE tensors with no place in cmae_mm: {unknown[:20]}')
    filled = []
    for key, source in FILLED.items():
        if key in reference and key not in out:
            out[key] = out[source].clone()
            filled.append(key)
    if 'target_encoder.steps' in reference:
        out['target_encoder.steps'] = torch.tensor(steps, dtype=torch.long)
        filled.append('target_encoder.steps')
    if '_extra_state' in reference:
        from ..models.algorithms.cmae import CMAE
        out['_extra_state'] = CMAE.mask_state(mask_seed)
        filled.append('_extra_state')
    _check_against(out, reference, 'cmae_mm CMAE')
    colour = []
    if bgr_fix:
        _convert_colour(out, ['backbone.', 'target_encoder.module.0.'], 'neck.', True)
        colour = [
            'backbone.patch_embed', 'target_encoder.module.0.patch_embed',
            'neck.decoder_pred'
        ]
    return OrderedDict((k, out[k]) for k in reference), dict(
        filled=filled, colour=colour)


def cmae_mm_to_cmae_official(state_dict: StateDict,
                             bgr: bool = True) -> Tuple[StateDict, List[str]]:
    """A cmae_mm ``CMAE`` state dict -> the official CMAE layout.

    ``bgr`` converts back to the release's colour order (inverse of ``bgr_fix``).
    Returns ``(official_state_dict, dropped_keys)``: the target's unused final norm,
    ``target_encoder.steps`` and the mask generator's state have no official place.
    """
    inverse = OrderedDict((dst, src) for src, dst in CMAE_PREFIXES.items())
    out, dropped = OrderedDict(), []
    for key, value in state_dict.items():
        if key in FILLED or key in ('target_encoder.steps', '_extra_state'):
            dropped.append(key)
            continue
        for dst, src in inverse.items():
            if key.startswith(dst):
                out[src + key[len(dst):]] = value.clone()
                break
        else:
            raise KeyError(f'cmae_mm tensor {key!r} has no place in the official '
                           f'CMAE layout.')
    if bgr:
        _convert_colour(out, ['backbone.', 'target_backbone.'], 'pixel_decoder.', False)
    return out, dropped


_MAE_DECODER_RULES = [
    (r'^decoder_embed\.', 'neck.decoder_embed.'),
    (r'^mask_token$', 'neck.mask_token'),
    (r'^decoder_pos_embed$', 'neck.decoder_pos_embed'),
    (r'^decoder_norm\.', 'neck.ln1.'),
    (r'^decoder_pred\.', 'neck.decoder_pred.'),
]


def mae_official_to_mae_mm(official: StateDict, reference: StateDict) -> StateDict:
    """The official MAE pretraining model (facebookresearch/mae models_mae.py, timm
    names: encoder ``blocks.N``, ``norm``; decoder ``decoder_embed``, ``mask_token``,
    ``decoder_pos_embed``, ``decoder_blocks.N``, ``decoder_norm``, ``decoder_pred``)
    -> MMPretrain's ``MAE`` (``backbone.*``, ``neck.*``); checked against
    ``reference`` (keys and shapes), nothing filled."""
    out, unknown = OrderedDict(), []
    for key, value in official.items():
        new = None
        m = re.match(r'^decoder_blocks\.(\d+)\.(.*)$', key)
        if m:
            renamed = _rename_timm(f'blocks.{m.group(1)}.{m.group(2)}')
            new = None if renamed is None else 'neck.decoder_' + renamed.replace(
                'layers.', 'blocks.', 1)
        else:
            for pattern, repl in _MAE_DECODER_RULES:
                if re.match(pattern, key):
                    new = re.sub(pattern, repl, key)
                    break
            else:
                renamed = _rename_timm(key)
                new = None if renamed is None else 'backbone.' + renamed
        if new is None:
            unknown.append(key)
        else:
            out[new] = value.clone()
    if unknown:
        raise KeyError(f'official MAE tensors with no place: {unknown[:20]}')
    _check_against(out, reference, 'MMPretrain MAE')
    return OrderedDict((k, out[k]) for k in reference)


def cmae_from_mae(mae_state: StateDict,
                  cmae_state: StateDict) -> Tuple[StateDict, list]:
    """Start CMAE from a MAE pretraining (docs/converters.md): the online and the
    target encoder from MAE's encoder, the pixel decoder from MAE's decoder; the
    feature decoder, projector, predictor and target projector keep ``cmae_state``
    (a freshly initialised CMAE, whose target projector equals its projector).

    Args:
        mae_state: an MMPretrain ``MAE`` state dict (``backbone.*``, ``neck.*``), e.g.
            from :func:`mae_official_to_mae_mm`.
        cmae_state: ``state_dict()`` of an initialised cmae_mm ``CMAE``.

    Returns:
        ``(state_dict, initialised_keys)``.
    """
    out = OrderedDict((k, v.clone()) for k, v in cmae_state.items())
    written = set()
    for key, value in mae_state.items():
        if key.startswith('backbone.'):
            targets = [key, 'target_encoder.module.0.' + key[len('backbone.'):]]
        elif key.startswith('neck.'):
            targets = [key]
        else:
            raise KeyError(f'MAE tensor {key!r} is neither encoder nor decoder.')
        for dst in targets:
            _put(out, dst, value)
            written.add(dst)
    return out, [k for k in cmae_state if k not in written]


def _put(out: StateDict, key: str, value: torch.Tensor) -> None:
    if key not in out:
        raise KeyError(f'{key!r} is not a tensor of the CMAE model.')
    if tuple(out[key].shape) != tuple(value.shape):
        raise ValueError(f'{key}: shape {tuple(value.shape)} does not fit the model\'s '
                         f'{tuple(out[key].shape)} (same architecture?).')
    out[key] = value.clone()


def _check_against(out: StateDict, reference: StateDict, name: str) -> None:
    missing = [k for k in reference if k not in out]
    extra = [k for k in out if k not in reference]
    if missing or extra:
        raise KeyError(f'{name}: tensors not provided by the source: {missing[:20]}; '
                       f'source tensors with no place: {extra[:20]}.')
    wrong = [(k, tuple(out[k].shape), tuple(reference[k].shape)) for k in reference
             if tuple(out[k].shape) != tuple(reference[k].shape)]
    if wrong:
        raise ValueError(f'{name}: shape mismatches (source, model): {wrong[:10]}')


def build_pretraining_model(config: str, init: bool = True) -> torch.nn.Module:
    """The pretraining model of a cmae_mm config (MMPretrain scope), initialised as
    training would start (``init_weights``), with SyncBN as BN (no process group)."""
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import cmae_mm  # noqa: F401  (registers the modules)
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    if init:
        model.init_weights()
    return model
