from . import checkpoint  # noqa: F401  (PretrainedEncoder weight initialiser)
from . import transfer_vit  # noqa: F401  (TransferViT, TransferBEiTViT in MMPretrain)
from . import launch  # noqa: F401  (CPUDistributedDataParallel model wrapper)
