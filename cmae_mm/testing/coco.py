"""A tiny COCO instance-segmentation dataset, in COCO's on-disk layout, from real
photos.

    root/
      train2017/*.jpg  val2017/*.jpg
      annotations/instances_train2017.json  annotations/instances_val2017.json

Every image is one of the scikit-image photographs (downscaled so that its longer side
is ``max_side``) with a few flat-coloured objects painted over it: red octagons
(COCO's "stop sign"), orange discs ("sports ball") and blue diamonds ("kite"), each
annotated with its exact polygon. The json lists COCO's 80 categories (ids and names),
so MMDetection's ``CocoDataset`` and ``CocoMetric`` read it with their default 80-class
metainfo. Areas are those of
the rasterised polygons (pycocotools), boxes are the polygons' extents, as in COCO.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np

from .photos import load_photos

#: (COCO category id, name, RGB colour, number of polygon vertices, phase)
SHAPES = (
    (13, 'stop sign', (220, 20, 20), 8, np.pi / 8),
    (37, 'sports ball', (255, 140, 0), 24, 0.),
    (38, 'kite', (30, 144, 255), 4, 0.),
)
#: COCO's 80 category ids, in the order of MMDetection's ``CocoDataset`` class names.
COCO_CATEGORY_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20,
                     21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
                     41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58,
                     59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79,
                     80, 81, 82, 84, 85, 86, 87, 88, 89, 90)
TRAIN_PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'motorcycle_left', 'ihc')
VAL_PHOTOS = ('hubble_deep_field', 'motorcycle_right', 'retina')


def _resize(rgb: np.ndarray, max_side: int) -> np.ndarray:
    import cv2
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _polygon(cx: float, cy: float, radius: float, n: int, phase: float) -> np.ndarray:
    """(n, 2) integer vertices of a regular polygon (x, y), counter-clockwise."""
    t = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], 1).round()


def _paint_objects(rgb: np.ndarray, rng: np.random.RandomState,
                   max_objects: int) -> List[dict]:
    """Paint 1..max_objects shapes into distinct cells of a 2x2 grid; return them."""
    import cv2
    h, w = rgb.shape[:2]
    cells = [(r, c) for r in range(2) for c in range(2)]
    order = rng.permutation(len(cells))[:rng.randint(1, max_objects + 1)]
    objects = []
    for i in order:
        r, c = cells[i]
        cell_h, cell_w = h / 2, w / 2
        radius = rng.uniform(0.25, 0.42) * min(cell_h, cell_w)
        cx = (c + 0.5) * cell_w + rng.uniform(-0.05, 0.05) * cell_w
        cy = (r + 0.5) * cell_h + rng.uniform(-0.05, 0.05) * cell_h
        cat_id, _, colour, n, phase = SHAPES[rng.randint(len(SHAPES))]
        poly = _polygon(cx, cy, radius, n, phase)
        poly[:, 0] = poly[:, 0].clip(0, w - 1)
        poly[:, 1] = poly[:, 1].clip(0, h - 1)
        cv2.fillPoly(rgb, [poly.astype(np.int32)], colour)
        objects.append(dict(category_id=cat_id, polygon=poly))
    return objects


def _annotation(obj: dict, ann_id: int, image_id: int, h: int, w: int) -> dict:
    from pycocotools import mask as mask_utils
    flat = [float(v) for v in obj['polygon'].reshape(-1)]
    rle = mask_utils.merge(mask_utils.frPyObjects([flat], h, w))
    x0, y0 = obj['polygon'].min(0)
    x1, y1 = obj['polygon'].max(0)
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=obj['category_id'],
        segmentation=[flat],
        area=float(mask_utils.area(rle)),
        bbox=[float(x0), float(y0),
              float(x1 - x0), float(y1 - y0)],
        iscrowd=0)


def coco_categories() -> List[dict]:
    """COCO's 80 categories (id, name), as every instances_*.json lists them.

    All 80 are written, not only the painted ones: a detector with COCO's 80 classes
    may predict any of them and ``CocoMetric`` maps labels through this list.
    """
    from mmdet.datasets import CocoDataset
    names = CocoDataset.METAINFO['classes']
    cats = [
        dict(id=i, name=n, supercategory='object')
        for i, n in zip(COCO_CATEGORY_IDS, names)
    ]
    by_id = {c['id']: c['name'] for c in cats}
    assert len(cats) == 80 and all(by_id[i] == n for i, n, *_ in SHAPES)
    return cats


def build_tiny_coco(root: str,
                    train_names: Sequence[str] = TRAIN_PHOTOS,
                    val_names: Sequence[str] = VAL_PHOTOS,
                    max_side: int = 256,
                    max_objects: int = 3,
                    seed: int = 0,
                    photos: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, str]:
    """Write the tiny COCO dataset under ``root``; return its paths.

    Args:
        root: output folder (``data_root`` of the detection configs).
        train_names / val_names: photographs (``cmae_mm.testing.PHOTO_FILES``) of
            each split.
        max_side: longer image side in pixels.
        max_objects: objects per image, at most 4 (one per quadrant).
        seed: placement and category draws.
        photos: ``{name: uint8 RGB}``; loaded from scikit-image when omitted.

    Returns:
        ``dict(data_root, train_ann, val_ann, train_img_dir, val_img_dir)``.
    """
    import cv2
    if not 1 <= max_objects <= 4:
        raise ValueError(f'max_objects must be in 1..4 (one per quadrant), '
                         f'got {max_objects}.')
    photos = photos or load_photos(sorted(set(train_names) | set(val_names)))
    rng = np.random.RandomState(seed)
    categories = coco_categories()
    out = dict(data_root=root)
    image_id = ann_id = 0
    for split, names in (('train', train_names), ('val', val_names)):
        img_dir = osp.join(root, f'{split}2017')
        os.makedirs(img_dir, exist_ok=True)
        images, annotations = [], []
        for name in names:
            rgb = _resize(photos[name], max_side).copy()
            objects = _paint_objects(rgb, rng, max_objects)
            image_id += 1
            h, w = rgb.shape[:2]
            file_name = f'{image_id:012d}.jpg'
            cv2.imwrite(
                osp.join(img_dir, file_name), np.ascontiguousarray(rgb[..., ::-1]),
                [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append(
                dict(id=image_id, file_name=file_name, height=h, width=w, photo=name))
            for obj in objects:
                ann_id += 1
                annotations.append(_annotation(obj, ann_id, image_id, h, w))
        ann_file = osp.join(root, 'annotations', f'instances_{split}2017.json')
        os.makedirs(osp.dirname(ann_file), exist_ok=True)
        with open(ann_file, 'w') as f:
            json.dump(
                dict(
                    info=dict(description='cmae_mm tiny COCO from scikit-image '
                              'photographs'),
                    licenses=[],
                    images=images,
                    annotations=annotations,
                    categories=categories), f)
        out[f'{split}_ann'] = ann_file
        out[f'{split}_img_dir'] = img_dir
    return out
