"""Detection and segmentation scenes composed of Fashion-MNIST items, on disk as COCO
instance JSON (MMDetection's ``CocoDataset``) and ADE20K-style label PNGs
(MMSegmentation, ``reduce_zero_label=True``): the data of the transfer study.

    python tools/study/fashion_mnist_scenes.py FMNIST_ROOT OUT_ROOT
        [--num-train 4000] [--num-val 500] [--size 96] [--seed 0]

``FMNIST_ROOT`` holds the four gunzipped IDX files (``fashion_mnist_data.py``).
Training scenes use only the 60,000 training items, validation scenes only the
10,000 test items. ``OUT_ROOT`` gets ``images/{training,validation}/NNNNNN.png``
(8-bit gray), ``annotations/{training,validation}/NNNNNN.png`` (0: background,
c + 1: class c), ``annotations/instances_{training,validation}.json`` and, last,
``scenes.json`` (parameters and counts; present with equal parameters: complete,
nothing is done; otherwise both splits are written again).

A scene: a black ``size`` x ``size`` image and 2-4 items, each resized
(``cv2.INTER_LINEAR``) to a random side of 24-48 px (0.75-1.5x the 32 px of
pretraining) and put at a random place fully inside. Its silhouette is its pixels
> ``THRESHOLD`` (10) after resizing; only those are pasted, in order, so a later item
occludes the earlier ones. An instance's visible mask is its silhouette less the
silhouettes of the later items. Instances with a visible area < 30 % of their
silhouette or < 16 px are dropped: their visible pixels stay in the image but get
label 0 in the label PNG and no COCO annotation. A scene is drawn again until it
keeps at least one instance. COCO annotations carry ``fmnist_index``, the item's
index in its IDX file.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
from typing import Dict, List, Tuple

import cv2
import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)  # fashion_mnist_data, also when loaded as a module
#: MMPretrain's FashionMNIST.METAINFO['classes']; category id / label value c + 1
CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
           'Sneaker', 'Bag', 'Ankle boot')
SPLITS = {'training': 'train', 'validation': 't10k'}  # split -> IDX file prefix
THRESHOLD = 10
MIN_VISIBLE = (0.3, 16)  # fraction of the silhouette, pixels
NUM_ITEMS, SIDE = (2, 4), (24, 48)  # items per scene, side of an item (px)


def make_scene(items: np.ndarray,
               labels: np.ndarray,
               rng: np.random.Generator,
               size: int = 96,
               num_items: Tuple[int, int] = NUM_ITEMS,
               side: Tuple[int, int] = SIDE) -> Tuple[np.ndarray, List[dict]]:
    """One scene of items (N, 28, 28) uint8 with labels (N, ).

    Returns:
        tuple: image (size, size) uint8 and the kept instances in paste order, each
        ``dict(label=int, index=int, mask=(size, size) bool)`` (visible pixels).
    """
    if side[1] > size:
        raise ValueError(f'items of up to {side[1]} px do not fit a {size} px scene')
    for _ in range(100):
        image = np.zeros((size, size), np.uint8)
        silhouettes, indices = [], []
        k = rng.integers(*num_items, endpoint=True)
        for index in rng.integers(0, len(items), k):
            s = int(rng.integers(*side, endpoint=True))
            y, x = rng.integers(0, size - s, size=2, endpoint=True)
            patch = cv2.resize(items[index], (s, s), interpolation=cv2.INTER_LINEAR)
            sil = np.zeros((size, size), bool)
            sil[y:y + s, x:x + s] = patch > THRESHOLD
            image[sil] = patch[patch > THRESHOLD]
            silhouettes.append(sil)
            indices.append(int(index))
        instances, covered = [], np.zeros((size, size), bool)
        for sil, index in zip(silhouettes[::-1], indices[::-1]):
            visible = sil & ~covered
            covered |= sil
            if visible.sum() >= max(MIN_VISIBLE[0] * sil.sum(), MIN_VISIBLE[1]):
                inst = dict(label=int(labels[index]), index=index, mask=visible)
                instances.insert(0, inst)
        if instances:
            return image, instances
    raise RuntimeError('no visible item in 100 scenes: are the items black?')


def coco_annotation(inst: dict, ann_id: int, img_id: int) -> dict:
    """COCO annotation of an instance: compressed RLE, tight box of the mask."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(inst['mask'].astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    ys, xs = np.nonzero(inst['mask'])
    x1, y1 = int(xs.min()), int(ys.min())
    bbox = [x1, y1, int(xs.max()) - x1 + 1, int(ys.max()) - y1 + 1]
    return dict(
        id=ann_id,
        image_id=img_id,
        category_id=inst['label'] + 1,
        segmentation=rle,
        area=int(inst['mask'].sum()),
        bbox=bbox,
        iscrowd=0,
        fmnist_index=inst['index'])


def write_json(obj: dict, path: str) -> None:
    with open(path + '.tmp', 'w') as f:
        json.dump(obj, f)
    os.replace(path + '.tmp', path)


def write_split(out_root: str, split: str, items: np.ndarray, labels: np.ndarray,
                num_scenes: int, seed: int, **scene_kw) -> Dict[str, int]:
    """Write ``num_scenes`` scenes of a split (``'training'``/``'validation'``).

    The scenes come from ``make_scene(items, labels, rng, **scene_kw)`` in turn, with
    ``rng = np.random.default_rng([seed, list(SPLITS).index(split)])``.

    Returns:
        dict: numbers of images and instances.
    """
    img_dir = osp.join(out_root, 'images', split)
    seg_dir = osp.join(out_root, 'annotations', split)
    for d in (img_dir, seg_dir):  # no stale scenes of an earlier, larger run
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    rng = np.random.default_rng([seed, list(SPLITS).index(split)])
    images, anns = [], []
    for i in range(num_scenes):
        image, instances = make_scene(items, labels, rng, **scene_kw)
        seg = np.zeros_like(image)
        for inst in instances:
            seg[inst['mask']] = inst['label'] + 1
            anns.append(coco_annotation(inst, len(anns) + 1, i + 1))
        name = f'{i:06d}.png'
        cv2.imwrite(osp.join(img_dir, name), image)
        cv2.imwrite(osp.join(seg_dir, name), seg)
        images.append(
            dict(id=i + 1, file_name=name, height=image.shape[0], width=image.shape[1]))
    categories = [dict(id=c + 1, name=n) for c, n in enumerate(CLASSES)]
    write_json(
        dict(
            info=dict(description=f'Fashion-MNIST scenes, {split}'),
            licenses=[],
            images=images,
            annotations=anns,
            categories=categories),
        osp.join(out_root, 'annotations', f'instances_{split}.json'))
    return dict(images=len(images), instances=len(anns))


def prepare_scenes(fmnist_root: str,
                   out_root: str,
                   num_train: int = 4000,
                   num_val: int = 500,
                   size: int = 96,
                   seed: int = 0) -> dict:
    """Write both splits into ``out_root`` unless ``scenes.json`` says they are there.

    Returns:
        dict: the content of ``scenes.json``: ``params`` and ``counts`` per split.
    """
    from fashion_mnist_data import read_idx  # tools/study/, beside
    data = {
        split: (read_idx(osp.join(fmnist_root, f'{p}-images-idx3-ubyte')),
                read_idx(osp.join(fmnist_root, f'{p}-labels-idx1-ubyte')))
        for split, p in SPLITS.items()
    }
    source_items = {split: len(d[1]) for split, d in data.items()}
    params = dict(num_train=num_train, num_val=num_val, size=size, seed=seed)
    params.update(
        num_items=list(NUM_ITEMS),
        side=list(SIDE),
        threshold=THRESHOLD,
        min_visible=list(MIN_VISIBLE),
        source_items=source_items)
    marker = osp.join(out_root, 'scenes.json')
    if osp.isfile(marker):
        with open(marker) as f:
            done = json.load(f)
        if done.get('params') == params:
            return done
        os.remove(marker)
    num = dict(training=num_train, validation=num_val)
    counts = {
        split: write_split(out_root, split, *data[split], num[split], seed, size=size)
        for split in SPLITS
    }
    write_json(dict(params=params, counts=counts), marker)
    return dict(params=params, counts=counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('fmnist_root', help='folder with the 4 gunzipped IDX files')
    parser.add_argument('out_root')
    parser.add_argument('--num-train', type=int, default=4000)
    parser.add_argument('--num-val', type=int, default=500)
    parser.add_argument('--size', type=int, default=96)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    done = prepare_scenes(args.fmnist_root, args.out_root, args.num_train, args.num_val,
                          args.size, args.seed)
    print(json.dumps(done['counts']))


if __name__ == '__main__':
    main()
