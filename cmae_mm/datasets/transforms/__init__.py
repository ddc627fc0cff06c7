# Each module below registers itself on import; keep one import line per file.
from .conmim_mask import ConMIMBlockMaskGenerator
from .fast_transforms import FastColorJitter, FastRandomGrayscale, FastRandomResizedCrop
from .gray_to_bgr import GrayToBGR
from .loading import SafeLoadImageFromFile
from .pixel_shift import PixelShift

__all__ = [
    'ConMIMBlockMaskGenerator', 'FastColorJitter', 'FastRandomGrayscale',
    'FastRandomResizedCrop', 'GrayToBGR', 'SafeLoadImageFromFile', 'PixelShift'
]
