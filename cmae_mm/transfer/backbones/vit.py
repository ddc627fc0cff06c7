"""The pretrained encoders as downstream backbones (classification, segmentation).

``TransferViT`` is MMPretrain's ``VisionTransformer`` (the architecture of CMAE's
``MAEViT`` encoder, same state-dict keys) and ``TransferBEiTViT`` is MMPretrain's
``BEiTViT`` (the architecture of ConMIM's ``BEiTPretrainViT`` encoder; its attention
runs through ``F.scaled_dot_product_attention`` unless ``use_sdpa=False``, see
:mod:`cmae_mm.models.utils.attention`, same state dict). Both add
:class:`~cmae_mm.transfer.weight_loading.PretrainedEncoderInitMixin`, so that

    init_cfg=dict(type='PretrainedEncoder', checkpoint=..., encoder='online')

loads the encoder *after* the ViT's own initialisation (which re-draws ``pos_embed``)
and fails naming any encoder tensor the checkpoint lacks. On loading:

- ``pos_embed`` is resized bicubically to the downstream patch grid
  (``VisionTransformer._prepare_pos_embed``);
- a shared relative position table (``rel_pos_bias.relative_position_bias_table``,
  ConMIM/BEiT pretraining) is copied into every block's own table and resized to the
  downstream window with BEiT's geometric-progression bicubic interpolation, as BEiT
  fine-tuning does; the per-block ``relative_position_index`` buffers are recomputed
  from the geometry, never loaded. (MMPretrain's own resizing calls SciPy's
  ``interp2d``, removed in SciPy 1.14; :func:`resize_relative_position_bias_table`
  uses its documented replacement, ``RectBivariateSpline`` with ``s=0``.)
"""
from typing import Dict

import numpy as np
import torch
from mmengine.logging import print_log
from mmpretrain.models import BEiTViT, VisionTransformer
from mmpretrain.registry import MODELS

from ...models.utils import BEiTSDPAMixin, route_attention
from ..weight_loading import PretrainedEncoderInitMixin


def resize_relative_position_bias_table(src_size: int, dst_size: int,
                                        table: torch.Tensor) -> torch.Tensor:
    """Resize a ``(src_size**2, num_heads)`` relative position table to
    ``(dst_size**2, num_heads)`` (sizes are ``2 * window - 1``).

    BEiT's scheme: the source offsets are placed on a geometric progression chosen so
    that it spans the target offsets, then a bicubic spline through them is sampled
    at the integer target offsets.
    """
    from scipy.interpolate import RectBivariateSpline

    def geometric_progression(a, r, n):
        return a * (1.0 - r**n) / (1.0 - r)

    left, right = 1.01, 1.5
    while right - left > 1e-6:
        q = (left + right) / 2.0
        if geometric_progression(1, q, src_size // 2) > dst_size // 2:
            right = q
        else:
            left = q
    dis, cur = [], 1
    for i in range(src_size // 2):
        dis.append(cur)
        cur += q**(i + 1)
    coords = np.array([-d for d in reversed(dis)] + [0] + dis)
    t = dst_size // 2.0
    targets = np.arange(-t, t + 0.1, 1.0)
    out = []
    for head in range(table.shape[1]):
        z = table[:, head].view(src_size, src_size).float().cpu().numpy()
        # z[row=y, col=x]; the spline takes z[x, y]
        spline = RectBivariateSpline(coords, coords, z.T, kx=3, ky=3, s=0)
        out.append(torch.from_numpy(spline(targets, targets).T.copy()).reshape(-1, 1))
    return torch.cat(out, dim=1).to(table)


@MODELS.register_module()
class TransferViT(PretrainedEncoderInitMixin, VisionTransformer):
    """MMPretrain's ``VisionTransformer`` initialised by ``PretrainedEncoder``.

    Inputs ``(B, 3, H, W)``; outputs as ``VisionTransformer`` (``out_type``
    ``'avg_featmap'``: ``(B, C)`` mean of patch tokens + new LayerNorm ``ln2``;
    ``'featmap'``: ``(B, C, H/16, W/16)`` per ``out_indices``; ``'cls_token'``:
    ``(B, C)``).

    Attention runs through :func:`~cmae_mm.models.utils.scaled_dot_product_attention`
    (float32 attention on CPUs under bfloat16 autocast; otherwise unchanged).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        route_attention(self)


@MODELS.register_module()
class TransferBEiTViT(PretrainedEncoderInitMixin, BEiTSDPAMixin, BEiTViT):
    """MMPretrain's ``BEiTViT`` (ConMIM's encoder) initialised by ``PretrainedEncoder``.

    Inputs ``(B, 3, H, W)``; outputs as ``BEiTViT``. Relative position tables are
    prepared on loading as described in the module docstring.

    Args:
        use_sdpa (bool): attention through ``F.scaled_dot_product_attention`` with
            the relative position bias as additive mask
            (:class:`~cmae_mm.models.utils.BEiTAttentionSDPA`; same
            state dict); False keeps ``BEiTAttention``. Defaults to True.
        **kwargs: the ``BEiTViT`` arguments.
    """

    def _prepare_relative_position_bias_table(self, state_dict: Dict[str, torch.Tensor],
                                              prefix: str, *args, **kwargs) -> None:
        shared = prefix + 'rel_pos_bias.relative_position_bias_table'
        if self.use_rel_pos_bias and shared in state_dict:
            print_log(
                'Copy the shared relative position table into each of the '
                f'{self.num_layers} blocks.',
                logger='current')
            table = state_dict.pop(shared)
            state_dict.pop(prefix + 'rel_pos_bias.relative_position_index', None)
            for i in range(self.num_layers):
                state_dict[f'{prefix}layers.{i}.attn.relative_position_bias_table'] = \
                    table.clone()
        own = self.state_dict()
        for key, current in own.items():
            ckpt_key = prefix + key
            if 'relative_position_bias_table' not in key or ckpt_key not in state_dict:
                continue
            loaded = state_dict[ckpt_key]
            if loaded.shape == current.shape:
                continue
            # the last 3 rows are the cls-token entries, kept as they are
            src = int(round((loaded.shape[0] - 3)**0.5))
            dst = int(round((current.shape[0] - 3)**0.5))
            state_dict[ckpt_key] = torch.cat([
                resize_relative_position_bias_table(src, dst, loaded[:-3]), loaded[-3:]
            ])
            print_log(
                f'Resize {key} from {tuple(loaded.shape)} to '
                f'{tuple(current.shape)}.',
                logger='current')
            state_dict.pop(ckpt_key.replace('bias_table', 'index'), None)
