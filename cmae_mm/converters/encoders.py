"""Key conversions between third-party encoder checkpoints and cmae_mm's layout.

Every converter returns encoder state dicts keyed as MMPretrain's encoders
(``VisionTransformer`` for CMAE/MAE, ``BEiTViT`` for ConMIM/BEiT), and
:func:`check_encoder` loads them into a freshly built encoder of the same size: it
reports missing and unexpected keys and raises ``KeyError`` when an expected key is
missing (shape mismatches raise too). :func:`save_encoders` writes an MMEngine-style
file ``{'meta': ..., 'state_dict': {'backbone.*' / 'target_encoder.module.0.*'}}`` that
the ``PretrainedEncoder`` initialiser loads like a cmae_mm pretraining checkpoint;
like :func:`save_converted` (every converter's writer) it refuses NaN / inf tensors
unless told to (``--allow-non-finite``).

Source layouts (read from the official code):

- MAE (facebookresearch/mae, timm names), ``{'model': ...}``: ``cls_token``,
  ``pos_embed``, ``patch_embed.proj``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,
  mlp.fc1,mlp.fc2}``, ``norm``; ``mask_token`` and ``decoder_*`` are dropped.
- CMAE (ZhichengHuang/CMAE, MMSelfSup-style), ``{'state_dict': ...}``: online encoder
  ``backbone.*``, momentum encoder ``target_backbone.*`` (or bare keys from its
  ``extract_backbone_weights.py``); the keys are already MMPretrain's ViT keys. Its
  data pipeline fed BGR images normalised with RGB statistics (docs/checkpoints.md),
  so the patch
  embedding is re-expressed exactly for RGB input (:func:`fix_bgr_patch_embed`).
- ConMIM (TencentARC/ConMIM, BEiT code), ``{'model': ...}``, online and momentum
  model in two files: ``blocks.N.{norm1,attn.qkv,attn.q_bias,attn.v_bias,attn.proj,
  norm2,mlp.fc1,mlp.fc2,gamma_1,gamma_2}``, ``rel_pos_bias.relative_position_bias_
  table``, ``norm``, ``cls_token``, ``mask_token``; ``lm_head``, ``projectors`` and
  ``rel_pos_bias2`` are dropped.
"""
import argparse
import logging
import re
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from torch import nn

from ..engine.checkpoint import (ENCODER_PREFIXES, check_finite, describe_non_finite,
                                 load_state_dict_checked, non_finite_tensors)

StateDict = Dict[str, torch.Tensor]
IMAGENET_RGB_MEAN = (123.675, 116.28, 103.53)
IMAGENET_RGB_STD = (58.395, 57.12, 57.375)

_TIMM_BLOCK_RULES = [  # (regex on the part after "blocks.N.", replacement)
    (r'^norm1\.', 'ln1.'),
    (r'^norm2\.', 'ln2.'),
    (r'^mlp\.fc1\.', 'ffn.layers.0.0.'),
    (r'^mlp\.fc2\.', 'ffn.layers.1.'),
    (r'^attn\.', 'attn.'),
    (r'^gamma_([12])$', r'gamma_\1'),
]


def _rename_timm(key: str) -> Optional[str]:
    """timm/BEiT ViT key -> MMPretrain ViT key; ``None`` when the key is not known."""
    m = re.match(r'^blocks\.(\d+)\.(.*)$', key)
    if m:
        idx, rest = m.groups()
        for pattern, repl in _TIMM_BLOCK_RULES:
            if re.match(pattern, rest):
                return f'layers.{idx}.' + re.sub(pattern, repl, rest)
        return None
    if key.startswith('patch_embed.proj.'):
        return key.replace('patch_embed.proj.', 'patch_embed.projection.')
    if key.startswith('norm.'):
        return 'ln1.' + key[len('norm.'):]
    if key in ('cls_token', 'pos_embed',
               'mask_token') or key.startswith('rel_pos_bias.'):
        return key
    return None


def _convert_timm(
        state_dict: StateDict,
        drop: Sequence[str]) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    out, dropped = OrderedDict(), []
    for key, value in state_dict.items():
        new = None if any(re.match(d, key) for d in drop) else _rename_timm(key)
        if new is None:
            dropped.append(key)
        else:
            out[new] = value
    return out, dropped


def convert_mae_official(
        state_dict: StateDict) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Official MAE encoder (timm names) -> ``VisionTransformer`` keys.

    Returns ``(encoder_state_dict, dropped_keys)``; the decoder, ``mask_token`` and any
    key outside the encoder are dropped (and listed).
    """
    return _convert_timm(
        state_dict, drop=[r'^decoder', r'^mask_token$', r'^head\.', r'^fc_norm\.'])


def convert_beit_official(
        state_dict: StateDict) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Official ConMIM / BEiT encoder -> ``BEiTViT`` keys (``mask_token`` kept)."""
    return _convert_timm(
        state_dict,
        drop=[r'^lm_head\.', r'^projectors\.', r'^rel_pos_bias2\.', r'^head\.'])


def fix_bgr_patch_embed(
        weight: torch.Tensor,
        bias: torch.Tensor,
        mean: Sequence[float] = IMAGENET_RGB_MEAN,
        std: Sequence[float] = IMAGENET_RGB_STD) -> Tuple[torch.Tensor, torch.Tensor]:
    """Re-express a patch embedding trained on BGR-ordered input normalised with
    RGB-ordered ``mean``/``std`` for RGB input normalised correctly.

    With pixels ``Q`` (RGB) the released pipeline fed ``x_c = (Q_{2-c} - m_c) / s_c``;
    we feed ``y_d = (Q_d - m_d) / s_d``. Since ``x_c = y_{2-c} s_{2-c} / s_c +
    (m_{2-c} - m_c) / s_c``, the same outputs come from
    ``w'[:, d] = w[:, 2-d] * s_d / s_{2-d}`` and
    ``b' = b + sum_{c,i,j} w[:, c, i, j] (m_{2-c} - m_c) / s_c`` (exact: the patch
    convolution has no padding).

    Args:
        weight: ``(C, 3, p, p)``. bias: ``(C,)``.
    """
    m = torch.tensor(mean, dtype=torch.float64)
    s = torch.tensor(std, dtype=torch.float64)
    perm = [2, 1, 0]
    w = weight.double()
    new_w = w[:, perm] * (s / s[perm]).view(1, 3, 1, 1)
    new_b = bias.double() + (w * ((m[perm] - m) / s).view(1, 3, 1, 1)).sum((1, 2, 3))
    return new_w.to(weight.dtype), new_b.to(bias.dtype)


def convert_cmae_official(
    state_dict: StateDict,
    bgr_fix: bool = True
) -> Tuple[Dict[str, 'OrderedDict[str, torch.Tensor]'], List[str]]:
    """Official CMAE checkpoint -> ``{'online': sd, 'target': sd}`` (present ones).

    Full pretraining checkpoints hold ``backbone.*`` and ``target_backbone.*``; files
    from the release's ``extract_backbone_weights.py`` hold bare encoder keys, taken as
    the online encoder. ``bgr_fix`` applies :func:`fix_bgr_patch_embed`.
    """
    prefixes = {'online': 'backbone.', 'target': 'target_backbone.'}
    encoders, dropped = {}, []
    has_prefix = any(k.startswith(p) for k in state_dict for p in prefixes.values())
    if not has_prefix:
        encoders['online'] = OrderedDict(state_dict)
    else:
        for key, value in state_dict.items():
            for name, prefix in prefixes.items():
                if key.startswith(prefix):
                    encoders.setdefault(name, OrderedDict())[key[len(prefix):]] = value
                    break
            else:
                dropped.append(key)
    if bgr_fix:
        for sd in encoders.values():
            w, b = 'patch_embed.projection.weight', 'patch_embed.projection.bias'
            if w not in sd or b not in sd:
                raise KeyError(f'CMAE checkpoint lacks {w!r}/{b!r}; is it a CMAE '
                               f'ViT checkpoint?')
            sd[w], sd[b] = fix_bgr_patch_embed(sd[w], sd[b])
    return encoders, dropped


def encoder_kind(state_dict: StateDict) -> str:
    """``'beit'`` for BEiT-style encoders (layer scale / relative position), else
    ``'vit'``."""
    if any(
            k.endswith('gamma_1') or 'relative_position_bias_table' in k
            for k in state_dict):
        return 'beit'
    return 'vit'


def build_reference_encoder(state_dict: StateDict) -> nn.Module:
    """An MMPretrain encoder whose size is read off ``state_dict`` (keys as ours)."""
    from mmpretrain.models import BEiTViT, VisionTransformer
    for key in ('cls_token', 'patch_embed.projection.weight',
                'layers.0.ffn.layers.0.0.weight'):
        if key not in state_dict:
            raise KeyError(f'Expected encoder tensor {key!r} is missing; found '
                           f'{sorted(state_dict)[:10]} ...')
    embed_dims = state_dict['cls_token'].shape[-1]
    patch = state_dict['patch_embed.projection.weight'].shape[-1]
    num_layers = 1 + max(
        int(m.group(1)) for k in state_dict
        for m in [re.match(r'^layers\.(\d+)\.', k)] if m)
    arch = dict(
        embed_dims=embed_dims,
        num_layers=num_layers,
        num_heads=max(1, embed_dims // 64),
        feedforward_channels=state_dict['layers.0.ffn.layers.0.0.weight'].shape[0])
    grid = 14
    if 'pos_embed' in state_dict:
        grid = int(round((state_dict['pos_embed'].shape[1] - 1)**0.5))
    if encoder_kind(state_dict) == 'vit':
        return VisionTransformer(
            arch=arch,
            img_size=grid * patch,
            patch_size=patch,
            final_norm=True,
            out_type='raw')
    tables = [k for k in state_dict if k.endswith('relative_position_bias_table')]
    if tables:
        num_rel, heads = state_dict[tables[0]].shape
        arch['num_heads'] = heads
        grid = (int(round((num_rel - 3)**0.5)) + 1) // 2
    shared = 'rel_pos_bias.relative_position_bias_table' in state_dict
    return BEiTViT(
        arch=arch,
        img_size=grid * patch,
        patch_size=patch,
        final_norm=True,
        out_type='raw',
        use_abs_pos_emb='pos_embed' in state_dict,
        use_shared_rel_pos_bias=shared,
        use_rel_pos_bias=bool(tables) and not shared,
        layer_scale_init_value=0.1 if 'layers.0.gamma_1' in state_dict else 0.0,
        bias='qv_bias' if 'layers.0.attn.q_bias' in state_dict else True)


def check_encoder(state_dict: StateDict,
                  allowed_missing: Iterable[str] = (),
                  name: str = 'converted encoder') -> Dict[str, List[str]]:
    """Load ``state_dict`` into :func:`build_reference_encoder`; report and fail.

    Returns ``{'missing': [...], 'unexpected': [...]}`` (missing ones matching
    ``allowed_missing`` only, since any other missing key raises ``KeyError``).
    """
    module = build_reference_encoder(state_dict)
    result = module.load_state_dict(OrderedDict(state_dict), strict=False)
    load_state_dict_checked(module, OrderedDict(state_dict), allowed_missing, name)
    report = dict(
        missing=list(result.missing_keys), unexpected=list(result.unexpected_keys))
    print(f'{name}: {len(state_dict)} tensors; missing {report["missing"]}; '
          f'unexpected (kept) {report["unexpected"]}')
    return report


def add_allow_non_finite(parser: argparse.ArgumentParser) -> None:
    """The converters' ``--allow-non-finite`` flag (:func:`save_converted`)."""
    parser.add_argument(
        '--allow-non-finite',
        action='store_true',
        help='write the output even when a tensor holds NaN or inf (refused by '
        'default)')


def save_converted(state_dict: StateDict,
                   out_file: str,
                   meta: dict,
                   allow_non_finite: bool = False,
                   what: str = 'The converted checkpoint') -> None:
    """``torch.save({'meta', 'state_dict'})``, unless a tensor holds a NaN or an inf.

    Raises :class:`~cmae_mm.engine.checkpoint.CheckpointError` naming the tensors and
    ``--allow-non-finite``; with ``allow_non_finite`` the file is written, a warning
    names the tensors and ``meta['non_finite_tensors']`` lists them.
    """
    bad = non_finite_tensors(state_dict)
    if bad and not allow_non_finite:
        check_finite(
            state_dict,
            what,
            fix=f'{out_file} was not written: convert an earlier checkpoint (the run '
            f'diverged before this one), or pass --allow-non-finite to write it '
            f'anyway (downstream configs and the evaluation tools refuse it).')
    meta = dict(meta)
    if bad:
        meta['non_finite_tensors'] = bad
        print_log(
            f'{what} has {describe_non_finite(bad)}; writing {out_file} anyway '
            f'(--allow-non-finite). Downstream configs and the evaluation tools '
            f'refuse it.',
            logger='current',
            level=logging.WARNING)
    torch.save({'meta': meta, 'state_dict': state_dict}, out_file)


def save_encoders(encoders: Dict[str, StateDict],
                  out_file: str,
                  meta: dict,
                  allow_non_finite: bool = False,
                  what: str = 'The converted encoder') -> None:
    """Write ``{'online'|'target': encoder}`` under cmae_mm's checkpoint prefixes
    (:func:`save_converted`: refused when a tensor is not finite, unless
    ``allow_non_finite``)."""
    state_dict = OrderedDict()
    for name, sd in encoders.items():
        prefix = ENCODER_PREFIXES[name]
        state_dict.update((prefix + k, v.contiguous()) for k, v in sd.items())
    save_converted(state_dict, out_file, meta, allow_non_finite, what)
