# Each module below registers itself on import; keep one import line per file.
from . import transfer_backbones  # noqa: F401  (TransferViT, TransferBEiTViT)
