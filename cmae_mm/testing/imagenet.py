"""A tiny ImageNet-1K in MMPretrain's on-disk layout, cut from real photographs.

Layout written (that of MMPretrain's ``ImageNet`` dataset, ``split='train'/'val'``)::

    root/
      train/<wnid>/<wnid>_<k>.JPEG
      val/ILSVRC2012_val_<8 digits>.JPEG
      meta/train.txt   "<wnid>/<wnid>_<k>.JPEG <class index>"
      meta/val.txt     "ILSVRC2012_val_<8 digits>.JPEG <class index>"

Class ``c`` is the ``c``-th bundled photograph; its images are random crops of it,
so a classifier can really learn the task. Class indices are those of the first
ImageNet-1K classes (wnids below, in the official order).
"""
import os
import os.path as osp
from typing import Dict, List, Optional

import numpy as np

from .photos import load_photos

# The first ImageNet-1K classes, in the order of the 1000-class index.
IMAGENET_WNIDS = [
    'n01440764', 'n01443537', 'n01484850', 'n01491361', 'n01494475', 'n01496331',
    'n01498041', 'n01514668', 'n01514859'
]


def _random_crop(rgb: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop (side 50-100 % of the short side) resized to ``size``."""
    import cv2
    h, w = rgb.shape[:2]
    side = int(min(h, w) * rng.uniform(0.5, 1.0))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    crop = rgb[y:y + side, x:x + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def build_tiny_imagenet(root: str,
                        num_classes: int = 3,
                        train_per_class: int = 4,
                        val_per_class: int = 2,
                        size: int = 96,
                        photos: Optional[List[str]] = None,
                        seed: int = 0) -> Dict[str, object]:
    """Write a tiny ImageNet into ``root``.

    Returns ``{'root', 'classes', 'train', 'val'}``.

    Args:
        root: output folder (created).
        num_classes: number of classes, at most ``len(IMAGENET_WNIDS)``.
        train_per_class / val_per_class: images per class and split.
        size: side of the square JPEG images.
        photos: photograph names (``cmae_mm.testing.PHOTO_FILES``) of the classes;
            defaults to the first ``num_classes``.
        seed: seed of the random crops.
    """
    import cv2
    if not 1 <= num_classes <= len(IMAGENET_WNIDS):
        raise ValueError(f'num_classes must be in 1..{len(IMAGENET_WNIDS)}, '
                         f'got {num_classes}.')
    all_photos = load_photos(photos)
    names = list(all_photos)[:num_classes]
    if len(names) < num_classes:
        raise ValueError(f'{num_classes} classes need as many photographs; got '
                         f'{len(names)}.')
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    os.makedirs(osp.join(root, 'val'), exist_ok=True)
    train_lines, val_lines = [], []
    val_id = 0
    for label, name in enumerate(names):
        wnid = IMAGENET_WNIDS[label]
        os.makedirs(osp.join(root, 'train', wnid), exist_ok=True)
        for k in range(train_per_class):
            rel = f'{wnid}/{wnid}_{k + 1}.JPEG'
            img = _random_crop(all_photos[name], size, rng)
            cv2.imwrite(osp.join(root, 'train', rel), img[..., ::-1].copy())
            train_lines.append(f'{rel} {label}')
        for _ in range(val_per_class):
            val_id += 1
            rel = f'ILSVRC2012_val_{val_id:08d}.JPEG'
            img = _random_crop(all_photos[name], size, rng)
            cv2.imwrite(osp.join(root, 'val', rel), img[..., ::-1].copy())
            val_lines.append(f'{rel} {label}')
    for split, lines in (('train', train_lines), ('val', val_lines)):
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    return dict(root=root, classes=names, train=len(train_lines), val=len(val_lines))
