"""Augmentation on the training device: batched view augmentations (MMPretrain's
``BATCH_AUGMENTS``) and the data preprocessor that makes the views."""
from .multi_view import MultiViewDataPreprocessor, select_train_pipeline
from .view_augments import (BatchColorJitter, BatchGaussianBlur, BatchRandomFlip,
                            BatchRandomGrayscale, BatchShiftedCrop, BatchSolarize,
                            BatchViewAugment)

__all__ = [
    'MultiViewDataPreprocessor', 'select_train_pipeline', 'BatchViewAugment',
    'BatchRandomFlip', 'BatchShiftedCrop', 'BatchColorJitter', 'BatchRandomGrayscale',
    'BatchGaussianBlur', 'BatchSolarize'
]
