# Each module below registers itself on import; keep one import line per file.
from .cmae_vit import CMAEViT  # noqa: F401
from .conmim_vit import ConMIMViT  # noqa: F401
