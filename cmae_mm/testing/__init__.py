"""Helpers that build small datasets in the real on-disk formats from real photographs."""
from .photos import PHOTO_FILES, load_photos, write_photo_folder

__all__ = ['PHOTO_FILES', 'load_photos', 'write_photo_folder']
from .coco import build_tiny_coco  # noqa: F401,E402  (tiny COCO instances dataset)
from .imagenet import build_tiny_imagenet  # noqa: F401,E402  (tiny ImageNet folder)
from .ade20k import build_tiny_ade20k  # noqa: F401,E402  (tiny ADE20K tree)
