"""A tiny labelled dataset in Fashion-MNIST's on-disk format (IDX files)."""
import os
import os.path as osp
import struct
from typing import Tuple

import numpy as np

from .photos import load_photos

#: file names MMPretrain's FashionMNIST reads (gunzipped)
IDX_FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
             't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')


def write_idx(path: str, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (magic 0x0800 | ndim, big-endian sizes)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    with open(path, 'wb') as f:
        f.write(struct.pack('>I', 0x0800 | array.ndim))
        f.write(struct.pack('>' + 'I' * array.ndim, *array.shape))
        f.write(array.tobytes())


def build_tiny_fashion_mnist(root: str,
                             num_train: int = 180,
                             num_test: int = 90,
                             seed: int = 0) -> Tuple[int, int]:
    """28x28 gray crops of the scikit-image photographs, labelled by photograph.

    Each class is one photograph; its images are random 28x28 crops of the
    photograph resized to 56 px (so same-class images share content, and a k-NN can
    tell the classes apart). Writes the four gunzipped IDX files into ``root``.

    Returns:
        tuple: (num_train, num_test).
    """
    import cv2
    rng = np.random.default_rng(seed)
    photos = [
        cv2.resize(
            cv2.cvtColor(p, cv2.COLOR_RGB2GRAY), (56, 56), interpolation=cv2.INTER_AREA)
        for p in load_photos().values()
    ]

    def draw(n: int):
        labels = np.arange(n) % len(photos)
        imgs = np.empty((n, 28, 28), np.uint8)
        for i, c in enumerate(labels):
            y, x = rng.integers(0, 29, size=2)
            imgs[i] = photos[c][y:y + 28, x:x + 28]
        return imgs, labels.astype(np.uint8)

    os.makedirs(root, exist_ok=True)
    for split, n in (('train', num_train), ('t10k', num_test)):
        imgs, labels = draw(n)
        write_idx(osp.join(root, f'{split}-images-idx3-ubyte'), imgs)
        write_idx(osp.join(root, f'{split}-labels-idx1-ubyte'), labels)
    return num_train, num_test
