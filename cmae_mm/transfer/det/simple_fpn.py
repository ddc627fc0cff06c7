"""ViTDet's simple feature pyramid, built from a plain ViT's last (stride-16) map.

Also registers MMPretrain's ``LayerNorm2d`` into MMDetection's registry as ``'LN2d'``:
the ViTDet recipe puts it in the pyramid, the 4conv1fc box head and the mask head
(``norm_cfg=dict(type='LN2d')``), and MMDetection 3.3.0 ships none (its ViTDet project,
where one lives, is not in the wheel).
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from mmpretrain.models.utils.norm import LayerNorm2d

if 'LN2d' not in MODELS.module_dict:
    MODELS.register_module('LN2d', module=LayerNorm2d)


@MODELS.register_module()
class SimpleFPN(BaseModule):
    """Simple feature pyramid (ViTDet, Fig. 2c).

    From the single ``(B, C, H/16, W/16)`` map of a plain ViT:

    - stride 4: deconv 2x2 (C -> C/2) + LN2d + GELU + deconv 2x2 (C/2 -> C/4);
    - stride 8: deconv 2x2 (C -> C/2);
    - stride 16: the map itself;
    - stride 32: max-pool 2x2;

    each followed by a 1x1 conv and a 3x3 conv to ``out_channels``, each with LN2d
    and no bias; stride 64 is a stride-2 subsampling of the stride-32 output (max-pool
    with kernel 1, detectron2's ``LastLevelMaxPool``).

    Args:
        backbone_channel (int): channels C of the backbone map (768 for ViT-B).
        in_channels (Sequence[int]): channels of the four rescaled maps; must be
            ``[C/4, C/2, C, C]``.
        out_channels (int): channels of every output level. Defaults to 256.
        num_outs (int): number of outputs, 4 or 5 (with the stride-64 level).
        norm_cfg (dict): norm of the convs. Defaults to ``dict(type='LN2d')``.

    Forward: a tuple whose last element is ``(B, C, h, w)`` -> ``num_outs`` maps
    ``(B, out_channels, 4h / 2**l, 4w / 2**l)``, strides 4, 8, 16, 32[, 64].
    """

    def __init__(self,
                 backbone_channel: int,
                 in_channels: Sequence[int],
                 out_channels: int = 256,
                 num_outs: int = 5,
                 norm_cfg: dict = dict(type='LN2d', requires_grad=True),
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        C = backbone_channel
        expected = [C // 4, C // 2, C, C]
        if list(in_channels) != expected:
            raise ValueError(f'SimpleFPN: in_channels must be {expected} for '
                             f'backbone_channel={C}, got {list(in_channels)}.')
        if num_outs not in (4, 5):
            raise ValueError(f'SimpleFPN: num_outs must be 4 or 5, got {num_outs}.')
        self.backbone_channel = C
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_outs = num_outs

        self.fpn1 = nn.Sequential(
            nn.ConvTranspose2d(C, C // 2, 2, 2),
            build_norm_layer(norm_cfg, C // 2)[1], nn.GELU(),
            nn.ConvTranspose2d(C // 2, C // 4, 2, 2))
        self.fpn2 = nn.Sequential(nn.ConvTranspose2d(C, C // 2, 2, 2))
        self.fpn3 = nn.Sequential(nn.Identity())
        self.fpn4 = nn.Sequential(nn.MaxPool2d(kernel_size=2, stride=2))

        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for in_ch in self.in_channels:
            self.lateral_convs.append(
                ConvModule(
                    in_ch,
                    out_channels,
                    1,
                    norm_cfg=norm_cfg,
                    act_cfg=None,
                    inplace=False))
            self.fpn_convs.append(
                ConvModule(
                    out_channels,
                    out_channels,
                    3,
                    padding=1,
                    norm_cfg=norm_cfg,
                    act_cfg=None,
                    inplace=False))

    def forward(self, inputs: Tuple[torch.Tensor]) -> Tuple[torch.Tensor]:
        x = inputs[-1]
        feats: List[torch.Tensor] = [
            self.fpn1(x), self.fpn2(x),
            self.fpn3(x), self.fpn4(x)
        ]
        outs = [
            fpn_conv(lateral_conv(f)) for f, lateral_conv, fpn_conv in zip(
                feats, self.lateral_convs, self.fpn_convs)
        ]
        if self.num_outs == 5:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)
