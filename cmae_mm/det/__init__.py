# Each module below registers itself on import; keep one import line per file.
from . import vitdet  # noqa: F401  ViTDet backbone (mmdet MODELS)
from . import simple_fpn  # noqa: F401  SimpleFPN neck + LN2d (mmdet MODELS)
from . import fp16_compression_hook  # noqa: F401  Fp16CompressionHook (mmdet HOOKS)
