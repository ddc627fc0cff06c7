# Each module below registers itself on import; keep one import line per file.
from .pixel_shift import PixelShift  # noqa: F401
