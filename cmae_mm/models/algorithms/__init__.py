# Each module below registers itself on import; keep one import line per file.
from .cmae import CMAE  # noqa: F401
from .conmim import ConMIM  # noqa: F401
