"""CMAE's pixel-shifting view generation."""
from typing import List, Optional, Sequence

import cv2
import numpy as np
from mmcv.transforms import BaseTransform, Compose
from mmcv.transforms.utils import cache_randomness
from mmpretrain.registry import TRANSFORMS


def contiguous(img: np.ndarray) -> np.ndarray:
    """``img`` as a C-contiguous array (itself when it already is one).

    ``RandomFlip`` returns ``np.flip(img, axis=1)``, a view with a negative column
    stride, which numpy copies 3 bytes at a time (about 0.2 ms for a 224 x 224 crop);
    OpenCV flips the underlying contiguous array back in about a tenth of that. Same
    bytes either way.
    """
    if img.flags.c_contiguous:
        return img
    if img.ndim == 3 and img.strides[1] < 0 and img[:, ::-1].flags.c_contiguous:
        return cv2.flip(img[:, ::-1], 1)
    return np.ascontiguousarray(img)


@TRANSFORMS.register_module()
class PixelShift(BaseTransform):
    """Online and target views of CMAE by pixel shifting (arXiv 2207.13532).

    Takes the image after the *shared* augmentation (in CMAE: RandomResizedCrop
    to 256 x 256 + horizontal flip, done by MMPretrain's transforms before this
    one) and cuts two ``view_size`` crops of it:

    - online view: the crop at offset (0, 0), no colour augmentation;
    - target view: the crop at offset (dy, dx), each drawn uniformly from
      ``0..max_shift`` inclusive, then ``target_transforms`` (MMPretrain / MMCV
      transforms; CMAE's colour jitter, grayscale and blur are written in the
      recipe's dataset config, ``configs/_base_/datasets/imagenet_cmae.py``).

    **Required keys:** ``img`` (H, W, C) with H, W >= view_size + max_shift.

    **Modified keys:** ``img`` becomes ``[online (S, S, C), target (S, S, C)]``
    (S = view_size), as :class:`MultiView` does; ``img_shape``.

    **Added keys:** ``pixel_shift``: the drawn ``(dy, dx)``.

    Args:
        view_size (int): Side of both views. Defaults to 224.
        max_shift (int): Largest shift per axis, inclusive. Defaults to 31.
        target_transforms (Sequence[dict], optional): Transforms applied to the
            target view only. None or ``[]``: none (the shifted crop as it is).
    """

    def __init__(self,
                 view_size: int = 224,
                 max_shift: int = 31,
                 target_transforms: Optional[Sequence[dict]] = None) -> None:
        if view_size < 1 or max_shift < 0:
            raise ValueError(f'PixelShift needs view_size >= 1 and max_shift >= 0, '
                             f'got view_size={view_size}, max_shift={max_shift}.')
        self.view_size = view_size
        self.max_shift = max_shift
        # build in MMPretrain's scope, so nested wrappers (RandomApply) find
        # MMPretrain's transforms also outside a Runner
        with TRANSFORMS.switch_scope_and_registry('mmpretrain') as registry:
            self.target_pipeline = Compose([
                registry.build(t) if isinstance(t, dict) else t
                for t in (target_transforms or [])
            ])

    @cache_randomness
    def _rand_shift(self) -> List[int]:
        """(dy, dx), each uniform over 0..max_shift inclusive."""
        return [int(s) for s in np.random.randint(0, self.max_shift + 1, size=2)]

    def transform(self, results: dict) -> dict:
        img = contiguous(results['img'])
        h, w = img.shape[:2]
        need = self.view_size + self.max_shift
        if h < need or w < need:
            raise ValueError(
                f'PixelShift cannot fit: a {self.view_size}px view shifted by up '
                f'to {self.max_shift}px needs an image of at least {need}x{need}, '
                f'got {h}x{w}. Resize or crop to >= {need} before it (CMAE: '
                f"RandomResizedCrop(scale=256)) or lower 'max_shift'/'view_size'.")
        dy, dx = self._rand_shift()
        s = self.view_size
        online = img[:s, :s].copy()
        target = dict(results, img=img[dy:dy + s, dx:dx + s].copy(), img_shape=(s, s))
        target = self.target_pipeline(target)
        results['img'] = [online, target['img']]
        results['img_shape'] = (s, s)
        results['pixel_shift'] = (dy, dx)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(view_size={self.view_size}, '
                f'max_shift={self.max_shift}, '
                f'target_pipeline={self.target_pipeline})')
