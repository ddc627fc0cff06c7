"""MMDetection parts of the ViTDet recipe (needs ``cmae_mm[det]``)."""
from .simple_fpn import SimpleFPN
from .vitdet import ViTDet

__all__ = ['ViTDet', 'SimpleFPN']
