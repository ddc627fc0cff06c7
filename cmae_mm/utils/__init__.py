from . import checkpoint, transfer_vit  # noqa: F401  (PretrainedEncoder, TransferViT)
