"""CMAE's pixel-shifting view generation."""
from typing import List, Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform, Compose
from mmcv.transforms.utils import cache_randomness
from mmpretrain.registry import TRANSFORMS

# Target-view colour augmentation of the released CMAE code (SPEC §1). Images are
# BGR here (mmcv loads BGR; SelfSupDataPreprocessor(to_rgb=True) swaps later), so
# the grayscale weights are given in BGR order: 0.114 B + 0.587 G + 0.2989 R.
CMAE_TARGET_TRANSFORMS = [
    dict(
        type='RandomApply',
        transforms=[
            dict(
                type='ColorJitter',
                brightness=0.4,
                contrast=0.4,
                saturation=0.4,
                hue=0.1)
        ],
        prob=0.8),
    dict(
        type='RandomGrayscale',
        prob=0.2,
        keep_channels=True,
        channel_weights=(0.114, 0.587, 0.2989)),
    dict(
        type='GaussianBlur',
        magnitude_range=(0.1, 2.0),
        magnitude_std='inf',
        prob=0.5),
]


@TRANSFORMS.register_module()
class PixelShift(BaseTransform):
    """Online and target views of CMAE by pixel shifting (arXiv 2207.13532).

    Takes the image after the *shared* augmentation (in CMAE: RandomResizedCrop
    to 256 x 256 + horizontal flip, done by MMPretrain's transforms before this
    one) and cuts two ``view_size`` crops of it:

    - online view: the crop at offset (0, 0), no colour augmentation;
    - target view: the crop at offset (dy, dx), each drawn uniformly from
      ``0..max_shift`` inclusive, then ``target_transforms`` (colour jitter,
      grayscale, blur: MMPretrain / MMCV transforms).

    **Required keys:** ``img`` (H, W, C) with H, W >= view_size + max_shift.

    **Modified keys:** ``img`` becomes ``[online (S, S, C), target (S, S, C)]``
    (S = view_size), as :class:`MultiView` does; ``img_shape``.

    **Added keys:** ``pixel_shift``: the drawn ``(dy, dx)``.

    Args:
        view_size (int): Side of both views. Defaults to 224.
        max_shift (int): Largest shift per axis, inclusive. Defaults to 31.
        target_transforms (Sequence[dict], optional): Transforms applied to the
            target view only. None: CMAE's (``CMAE_TARGET_TRANSFORMS``); ``[]``:
            none.
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
        if target_transforms is None:
            target_transforms = CMAE_TARGET_TRANSFORMS
        # build in MMPretrain's scope, so nested wrappers (RandomApply) find
        # MMPretrain's transforms also outside a Runner
        with TRANSFORMS.switch_scope_and_registry('mmpretrain') as registry:
            self.target_pipeline = Compose([
                registry.build(t) if isinstance(t, dict) else t
                for t in target_transforms
            ])

    @cache_randomness
    def _rand_shift(self) -> List[int]:
        """(dy, dx), each uniform over 0..max_shift inclusive."""
        return [int(s) for s in np.random.randint(0, self.max_shift + 1, size=2)]

    def transform(self, results: dict) -> dict:
        img = results['img']
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
        target = dict(results, img=img[dy:dy + s, dx:dx + s].copy(),
                      img_shape=(s, s))
        target = self.target_pipeline(target)
        results['img'] = [online, target['img']]
        results['img_shape'] = (s, s)
        results['pixel_shift'] = (dy, dx)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(view_size={self.view_size}, '
                f'max_shift={self.max_shift}, '
                f'target_pipeline={self.target_pipeline})')
