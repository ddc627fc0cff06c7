"""A tiny ADE20K in MMSegmentation's on-disk layout, cut from real photographs.

Layout written (``ADE20KDataset``: ``.jpg`` images, ``.png`` label maps)::

    root/ADEChallengeData2016/
      images/{training,validation}/ADE_{train,val}_<8 digits>.jpg
      annotations/{training,validation}/ADE_{train,val}_<8 digits>.png

Labels are derived from the photograph, so they are learnable: the luminance is
quantised into ``num_classes`` bands, written as 1..num_classes; pixels within
``margin`` grey levels of a band boundary get 0 ("other"), which
``reduce_zero_label=True`` turns into the ignore index 255, as in real ADE20K.
"""
import os
import os.path as osp
from typing import Dict, List, Optional

import numpy as np

from .photos import load_photos


def photo_labels(rgb: np.ndarray, num_classes: int = 4, margin: int = 3) -> np.ndarray:
    """``(H, W)`` uint8 labels in 0..num_classes of an RGB photograph (see module)."""
    gray = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])
    step = 256.0 / num_classes
    labels = (np.floor(gray / step).clip(0, num_classes - 1) + 1).astype(np.uint8)
    frac = gray - np.floor(gray / step) * step  # position inside its band
    near_edge = (frac < margin) | (frac > step - margin)
    near_edge &= (gray > margin) & (gray < 255 - margin)  # 0 and 255 are no edges
    labels[near_edge] = 0
    return labels


def build_tiny_ade20k(root: str,
                      num_train: int = 4,
                      num_val: int = 2,
                      size: int = 96,
                      num_classes: int = 4,
                      photos: Optional[List[str]] = None,
                      seed: int = 0) -> Dict[str, object]:
    """Write a tiny ADE20K under ``root``; return ``{'data_root', 'train', 'val'}``.

    ``data_root`` is ``root/ADEChallengeData2016`` (what configs call ``data_root``).
    Images are random crops (50-100 % of the short side) of the photographs, resized
    so the short side is ``size``; labels come from :func:`photo_labels`.
    """
    import cv2
    all_photos = load_photos(photos)
    names = list(all_photos)
    rng = np.random.default_rng(seed)
    data_root = osp.join(root, 'ADEChallengeData2016')
    counts = {}
    for split, prefix, num in (('training', 'ADE_train', num_train),
                               ('validation', 'ADE_val', num_val)):
        img_dir = osp.join(data_root, 'images', split)
        ann_dir = osp.join(data_root, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(num):
            rgb = all_photos[names[i % len(names)]]
            h, w = rgb.shape[:2]
            ch = int(h * rng.uniform(0.5, 1.0))
            cw = int(w * rng.uniform(0.5, 1.0))
            y = int(rng.integers(0, h - ch + 1))
            x = int(rng.integers(0, w - cw + 1))
            crop = rgb[y:y + ch, x:x + cw]
            scale = size / min(ch, cw)
            out_wh = (max(size, round(cw * scale)), max(size, round(ch * scale)))
            crop = cv2.resize(crop, out_wh, interpolation=cv2.INTER_AREA)
            stem = f'{prefix}_{i + 1:08d}'
            cv2.imwrite(
                osp.join(img_dir, stem + '.jpg'), crop[..., ::-1].copy(),
                [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(
                osp.join(ann_dir, stem + '.png'), photo_labels(crop, num_classes))
        counts[split] = num
    return dict(data_root=data_root, train=counts['training'], val=counts['validation'])
