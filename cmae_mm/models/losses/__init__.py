# Each module below registers itself on import; keep one import line per file.
from .denoising_contrastive_loss import DenoisingContrastiveLoss  # noqa: F401
