# Each module below registers itself on import; keep one import line per file.
from .conmim_mask import ConMIMBlockMaskGenerator  # noqa: F401
from .gray_to_bgr import GrayToBGR  # noqa: F401
from .loading import SafeLoadImageFromFile  # noqa: F401
from .pixel_shift import PixelShift  # noqa: F401
