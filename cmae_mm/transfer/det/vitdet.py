"""The plain ViT backbone of ViTDet, built on MMPretrain's ``ViTSAM``.

`Exploring Plain Vision Transformer Backbones for Object Detection
<https://arxiv.org/abs/2203.16527>`_ (ViTDet) keeps the pretrained ViT plain: window
attention (window 14) in every block except a few global ones (2, 5, 8, 11 for ViT-B),
decomposed relative position added to the attention logits, absolute position
embeddings interpolated to the detection grid, and only the last feature map
(stride 16) handed to the simple feature pyramid. MMPretrain's ``ViTSAM`` (the SAM
image encoder, itself a ViTDet backbone) has all of that; this class

- turns ViTSAM's SAM neck off (``out_channels=0``): the output is the raw
  ``(B, C, H/16, W/16)`` map of the last block;
- adds stochastic depth to the attention branch too (ViTSAM applies it to the MLP
  branch only; ViTDet drops both residual branches);
- computes attention with ``F.scaled_dot_product_attention`` (``use_sdpa``, default
  on): ViTSAM's decomposed relative position term is built as an additive
  ``(B, heads, N, N)`` bias and passed as ``attn_mask``, so a fused kernel replaces
  the hand-written softmax (:class:`ViTSAMAttentionSDPA`, same parameters);
- maps a cmae_mm pretraining encoder (MMPretrain ``VisionTransformer`` / ``MAEViT``
  keys) onto its own keys in :meth:`ViTDet.adapt_pretrained_state_dict`, which the
  ``PretrainedEncoder`` initializer calls before a checked (never silent) load.
"""
import math
from collections import OrderedDict
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from mmcv.cnn.bricks.drop import build_dropout
from mmdet.registry import MODELS
from mmengine.logging import print_log
from mmengine.model import ModuleList
from mmpretrain.models.backbones.vit_sam import (Attention, TransformerEncoderLayer,
                                                 ViTSAM, get_rel_pos, window_partition,
                                                 window_unpartition)
from mmpretrain.models.utils import resize_pos_embed

from ...models.utils.precision import scaled_dot_product_attention
from ..weight_loading import PretrainedEncoderInitMixin

#: Per-block tensors of an MMPretrain ``VisionTransformer`` layer and their names in a
#: ``ViTSAM`` layer. The two classes name them alike (both use mmcv's ``FFN`` and an
#: ``attn.qkv`` / ``attn.proj`` attention), so the map is the identity; it is spelled
#: out so that a renamed key fails here instead of going unloaded.
VIT_TO_VITSAM_BLOCK_KEYS = OrderedDict((k, k) for k in (
    'ln1.weight',
    'ln1.bias',
    'attn.qkv.weight',
    'attn.qkv.bias',
    'attn.proj.weight',
    'attn.proj.bias',
    'ln2.weight',
    'ln2.bias',
    'ffn.layers.0.0.weight',
    'ffn.layers.0.0.bias',
    'ffn.layers.1.weight',
    'ffn.layers.1.bias',
))
#: Tensors of the patch embedding (mmcv ``PatchEmbed`` in both classes).
VIT_TO_VITSAM_STEM_KEYS = OrderedDict(
    (k, k) for k in ('patch_embed.projection.weight', 'patch_embed.projection.bias'))
#: Pretraining-only tensors a detector has no use for: the class token and the final
#: norm (ViTDet feeds the pyramid with the last block's output, un-normalised), and
#: a masked-image-modeling mask token where the encoder has one.
DROPPED_KEYS = ('cls_token', 'mask_token', 'ln1.weight', 'ln1.bias')


def decomposed_rel_pos_bias(q: torch.Tensor, rel_pos_h: torch.Tensor,
                            rel_pos_w: torch.Tensor, q_size: Tuple[int, int],
                            k_size: Tuple[int, int]) -> torch.Tensor:
    """The decomposed relative position term of ViTSAM's ``add_decomposed_rel_pos``
    (``mmpretrain/models/backbones/vit_sam.py``) as a bias of its own.

    Args:
        q: queries ``(..., q_h * q_w, C)`` (unscaled, as ViTSAM uses them).
        rel_pos_h: ``(L_h, C)`` table of the height axis.
        rel_pos_w: ``(L_w, C)`` table of the width axis.
        q_size: ``(q_h, q_w)``; k_size: ``(k_h, k_w)``.

    Returns:
        ``(..., q_h * q_w, k_h * k_w)``: ``bias[.., (y, x), (i, j)] =
        q[.., (y, x)] . (Rh[y, i] + Rw[x, j])``, i.e. what ``add_decomposed_rel_pos``
        adds to the logits.
    """
    q_h, q_w = q_size
    k_h, k_w = k_size
    Rh = get_rel_pos(q_h, k_h, rel_pos_h)  # (q_h, k_h, C)
    Rw = get_rel_pos(q_w, k_w, rel_pos_w)  # (q_w, k_w, C)
    lead = q.shape[:-2]
    r_q = q.reshape(*lead, q_h, q_w, q.shape[-1])
    rel_h = torch.einsum('...hwc,hkc->...hwk', r_q, Rh)  # (..., q_h, q_w, k_h)
    rel_w = torch.einsum('...hwc,wkc->...hwk', r_q, Rw)  # (..., q_h, q_w, k_w)
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(
        *lead, q_h * q_w, k_h * k_w)


class ViTSAMAttentionSDPA(Attention):
    """ViTSAM's ``Attention`` computed by ``F.scaled_dot_product_attention``.

    Same arguments and parameters as ``Attention`` (``qkv``, ``proj``,
    ``rel_pos_h`` / ``rel_pos_w``); the decomposed relative position term is passed
    as SDPA's additive ``attn_mask`` (:func:`decomposed_rel_pos_bias`) with the
    module's ``scale``. Only ``forward`` differs (no ``__init__``, nothing new in the
    state dict), so a built ``Attention`` can be re-classed to it.
    Input and output: ``(B, H, W, C)`` (``B`` may count windows).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        # q, k, v: (B, heads, H * W, C / heads)
        q, k, v = self.qkv(x).reshape(B, H * W, 3, self.num_heads,
                                      -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = None
        if self.use_rel_pos:
            # (B, heads, H * W, H * W), in the dtype of q (half under autocast)
            bias = decomposed_rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (H, W),
                                           (H, W)).to(q.dtype)
        x = scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        # (B, heads, H * W, C / heads) -> (B, H, W, C)
        x = x.view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4)
        return self.proj(x.reshape(B, H, W, -1))


class ViTDetLayer(TransformerEncoderLayer):
    """A ``ViTSAM`` block with stochastic depth on both residual branches.

    ``x = x + DropPath(Attn(LN(x)))``; ``x = x + DropPath(MLP(LN(x)))``.
    Input and output: ``(B, H, W, C)``.

    Args:
        drop_path_rate (float): stochastic depth of both branches. Defaults to 0.
        use_sdpa (bool): re-class the block's ``Attention`` to
            :class:`ViTSAMAttentionSDPA` (same tensors, no random draws). Defaults to
            True.
        *args, **kwargs: the ``TransformerEncoderLayer`` arguments.
    """

    def __init__(self,
                 *args,
                 drop_path_rate: float = 0.,
                 use_sdpa: bool = True,
                 **kwargs) -> None:
        super().__init__(*args, drop_path_rate=drop_path_rate, **kwargs)
        self.drop_path = build_dropout(
            dict(type='DropPath', drop_prob=float(drop_path_rate)))
        if use_sdpa:
            self.attn.__class__ = ViTSAMAttentionSDPA

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.ln1(x)
        if self.window_size > 0:
            H, W = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)
        x = self.attn(x)
        if self.window_size > 0:
            x = window_unpartition(x, self.window_size, pad_hw, (H, W))
        x = shortcut + self.drop_path(x)
        # the FFN adds its own DropPath (built by ViTSAM) before the identity
        return self.ffn(self.ln2(x), identity=x)


@MODELS.register_module()
class ViTDet(PretrainedEncoderInitMixin, ViTSAM):
    """ViTDet's plain ViT backbone (window + global attention, relative position).

    Args:
        arch (str | dict): ``'base'`` / ``'large'`` / ``'huge'`` (ViTSAM's archs; base
            has global blocks 2, 5, 8, 11) or a dict with ``embed_dims``,
            ``num_layers``, ``num_heads``, ``feedforward_channels`` and
            ``global_attn_indexes``.
        img_size (int): the detection input size (1024 in ViTDet); fixes the
            absolute position grid (``img_size / patch_size``) and the size of the
            global blocks' relative position tables.
        patch_size (int): patch size. Defaults to 16.
        drop_path_rate (float): stochastic depth, linearly increasing over blocks,
            on both residual branches. Defaults to 0.1 (ViTDet, ViT-B).
        window_size (int): window of the non-global blocks. Defaults to 14.
        use_rel_pos (bool): decomposed relative position. Defaults to True.
        use_sdpa (bool): attention through ``F.scaled_dot_product_attention``, the
            relative position term as additive mask (:class:`ViTSAMAttentionSDPA`;
            same state dict). False keeps ViTSAM's hand-written attention. Defaults
            to True.
        init_cfg (dict, optional): e.g. ``dict(type='PretrainedEncoder',
            checkpoint=..., encoder='online')``, applied after ViTSAM's own init
            (which re-draws ``pos_embed``) by ``PretrainedEncoderInitMixin``.
        **kwargs: the other ``ViTSAM`` arguments (``qkv_bias``, ``norm_cfg``,
            ``frozen_stages``, ``interpolate_mode``, ``patch_cfg``, ...).

    Forward: ``(B, 3, H, W)`` -> a 1-tuple with ``(B, C, H/16, W/16)``.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 img_size: int = 1024,
                 patch_size: int = 16,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 qkv_bias: bool = True,
                 use_rel_pos: bool = True,
                 window_size: int = 14,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 init_cfg: Optional[dict] = None,
                 use_sdpa: bool = True,
                 **kwargs) -> None:
        for key in ('out_channels', 'out_indices', 'out_type', 'layer_cfgs'):
            if key in kwargs:
                raise TypeError(
                    f'ViTDet fixes {key!r} (it outputs the last block\'s raw '
                    f'feature map for SimpleFPN); remove it from the config.')
        if isinstance(arch, dict) and 'global_attn_indexes' not in arch:
            raise KeyError('A custom ViTDet arch needs `global_attn_indexes` (the '
                           'blocks with global attention, e.g. [2, 5, 8, 11] for 12 '
                           f'blocks); got keys {sorted(arch)}.')
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            out_channels=0,
            out_indices=-1,
            out_type='raw',
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            qkv_bias=qkv_bias,
            use_abs_pos=True,
            use_rel_pos=use_rel_pos,
            window_size=window_size,
            norm_cfg=norm_cfg,
            init_cfg=init_cfg,
            **kwargs)
        # Same blocks as ViTSAM builds, with drop path on the attention branch too.
        dpr = np.linspace(0, drop_path_rate, self.num_layers)
        self.layers = ModuleList(
            ViTDetLayer(
                embed_dims=self.embed_dims,
                num_heads=self.arch_settings['num_heads'],
                feedforward_channels=self.arch_settings['feedforward_channels'],
                drop_rate=drop_rate,
                drop_path_rate=dpr[i],
                qkv_bias=qkv_bias,
                window_size=0 if i in self.global_attn_indexes else window_size,
                input_size=self.patch_resolution,
                use_rel_pos=use_rel_pos,
                use_sdpa=use_sdpa,
                norm_cfg=norm_cfg) for i in range(self.num_layers))
        if self.frozen_stages > 0:
            self._freeze_stages()

    def adapt_pretrained_state_dict(
            self, state_dict: Dict[str,
                                   torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
        """Map a cmae_mm ViT encoder state dict onto this backbone's keys.

        Args:
            state_dict: an MMPretrain ``VisionTransformer`` / ``MAEViT`` state dict
                (prefix already stripped, e.g. by ``extract_encoder``): ``cls_token``
                (1, 1, C), ``pos_embed`` (1, 1 + h*w, C), ``patch_embed.projection.*``,
                ``layers.i.{ln1,attn.qkv,attn.proj,ln2,ffn.layers.0.0,ffn.layers.1}.*``
                and the final norm ``ln1.*``.

        Returns:
            The tensors keyed as in ``self.state_dict()``:

            - block and patch-embedding tensors, unchanged (explicit key map above);
            - ``pos_embed``: the extra (cls) token's entry removed, the grid reshaped to
              (1, h, w, C) and resized bicubically to ``self.patch_resolution`` (the
              detection grid, 64x64 for 1024 / 16);
            - ``layers.i.attn.rel_pos_{h,w}``: not in a MAE-style checkpoint,
              initialised to zeros as ViTDet does (``rel_pos_zero_init``), so that the
              loaded network starts as the pretrained one; tables the checkpoint does
              have are kept (and interpolated by ViTSAM's load hook if sizes differ);
            - the class token, mask token and final norm are dropped and reported.

        Raises:
            KeyError: a checkpoint tensor this map does not know (e.g. layer-scale
                ``gamma``), or a ``pos_embed`` whose length is no square grid.
        """
        out = OrderedDict()
        dropped, unknown = [], []
        for key, value in state_dict.items():
            block = key.split('.', 2)
            if key in DROPPED_KEYS:
                dropped.append(key)
            elif key == 'pos_embed':
                out['pos_embed'] = self._pos_embed_to_grid(value)
            elif key in VIT_TO_VITSAM_STEM_KEYS:
                out[VIT_TO_VITSAM_STEM_KEYS[key]] = value
            elif block[0] == 'layers' and len(block) == 3 and \
                    block[2] in VIT_TO_VITSAM_BLOCK_KEYS:
                out[f'layers.{block[1]}.{VIT_TO_VITSAM_BLOCK_KEYS[block[2]]}'] = value
            elif block[0] == 'layers' and len(block) == 3 and \
                    block[2] in ('attn.rel_pos_h', 'attn.rel_pos_w'):
                out[key] = value
            else:
                unknown.append(key)
        if unknown:
            raise KeyError(
                f'ViTDet: the checkpoint has tensors with no place in the detection '
                f'backbone: {unknown[:20]}. Only MMPretrain VisionTransformer/MAEViT '
                f'encoders without layer scale are supported; convert the checkpoint '
                f'(tools/model_converters) or extend VIT_TO_VITSAM_BLOCK_KEYS.')
        zeroed = []
        for name, param in self.state_dict().items():
            if 'rel_pos_' in name and name not in out:
                out[name] = torch.zeros_like(param)
                zeroed.append(name)
        print_log(
            f'ViTDet: mapped {len(out) - len(zeroed)} encoder tensors; dropped '
            f'{dropped} (unused by a detector); relative position tables initialised '
            f'to zeros as in ViTDet: {len(zeroed)}.',
            logger='current')
        return out

    def _pos_embed_to_grid(self, pos_embed: torch.Tensor) -> torch.Tensor:
        """(1, [1 +] h*w, C) -> (1, H, W, C) on this backbone's patch grid."""
        if pos_embed.dim() == 4:  # already a (1, h, w, C) grid
            src_hw: Tuple[int, int] = tuple(pos_embed.shape[1:3])
            pos_embed = pos_embed.flatten(1, 2)
        else:
            length = pos_embed.shape[1]
            num_extra = next(
                (n for n in (1, 0, 2)
                 if length > n and math.isqrt(length - n)**2 == length - n), None)
            if num_extra is None:
                raise KeyError(
                    f'ViTDet: pos_embed of shape {tuple(pos_embed.shape)} is '
                    f'not 1 (cls) + a square grid of patches.')
            pos_embed = pos_embed[:, num_extra:]
            side = math.isqrt(length - num_extra)
            src_hw = (side, side)
        dst_hw = tuple(self.patch_resolution)
        resized = resize_pos_embed(
            pos_embed, src_hw, dst_hw, mode=self.interpolate_mode, num_extra_tokens=0)
        if src_hw != dst_hw:
            print_log(
                f'ViTDet: resized pos_embed from {src_hw} to {dst_hw} '
                f'({self.interpolate_mode}).',
                logger='current')
        return resized.reshape(1, *dst_hw, self.embed_dims)
