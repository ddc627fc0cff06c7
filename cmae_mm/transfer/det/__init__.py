"""MMDetection parts of the ViTDet recipe (needs ``cmae_mm[det]``), and the
torchvision fallback of MMCV's NMS and RoIAlign (:mod:`.ops_fallback`)."""
from .ops_fallback import (disable_torchvision_ops, enable_torchvision_ops,
                           mmcv_cuda_ops_available, prepare_detection_ops,
                           torchvision_ops)
from .simple_fpn import SimpleFPN
from .vitdet import ViTDet

__all__ = [
    'ViTDet', 'SimpleFPN', 'prepare_detection_ops', 'mmcv_cuda_ops_available',
    'enable_torchvision_ops', 'disable_torchvision_ops', 'torchvision_ops'
]
