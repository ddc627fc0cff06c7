"""Testing utilities: small datasets in the real on-disk formats (ImageNet folder,
ADE20K tree, COCO json, Fashion-MNIST IDX) built from the photographs inside
scikit-image, the --cfg-options of tiny transfer runs, and the one subprocess
runner of the tests."""
from .ade20k import build_tiny_ade20k
from .coco import build_tiny_coco
from .idx import build_tiny_fashion_mnist
from .imagenet import build_tiny_imagenet
from .photos import PHOTO_FILES, load_photos, write_photo_folder
from .process import run_subprocess
from .transfer import as_cli, det_tiny_options, seg_tiny_options

__all__ = [
    'PHOTO_FILES', 'load_photos', 'write_photo_folder', 'build_tiny_ade20k',
    'build_tiny_coco', 'build_tiny_fashion_mnist', 'build_tiny_imagenet',
    'run_subprocess', 'as_cli', 'det_tiny_options', 'seg_tiny_options'
]
