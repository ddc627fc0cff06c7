"""MMDetection parts of the ViTDet recipe (needs ``cmae_mm[det]``), and the
torchvision fallback of MMCV's NMS and RoIAlign (:mod:`.ops_fallback`).

:class:`~cmae_mm.transfer.backbones.TransferBEiTViT` (ConMIM / BEiT encoders) is also
registered into MMDetection's registry: a plain BEiT-style backbone (global attention,
its own relative position bias and layer scale) in front of :class:`SimpleFPN`, for
encoders whose blocks ViTDet's cannot load (docs/transfer_study.md).
"""
from mmdet.registry import MODELS

from ..backbones import TransferBEiTViT
from .ops_fallback import (disable_torchvision_ops, enable_torchvision_ops,
                           mmcv_cuda_ops_available, prepare_detection_ops,
                           torchvision_ops)
from .simple_fpn import SimpleFPN
from .vitdet import ViTDet

MODELS.register_module(module=TransferBEiTViT)

__all__ = [
    'ViTDet', 'SimpleFPN', 'prepare_detection_ops', 'mmcv_cuda_ops_available',
    'enable_torchvision_ops', 'disable_torchvision_ops', 'torchvision_ops'
]
