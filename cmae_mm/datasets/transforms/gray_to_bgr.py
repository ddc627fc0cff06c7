"""Single-channel images to three channels."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS


@TRANSFORMS.register_module()
class GrayToBGR(BaseTransform):
    """Repeat a grayscale image into three equal channels.

    MMPretrain's ``MNIST`` / ``FashionMNIST`` datasets give ``img`` as (H, W) uint8;
    the pretraining recipes' transforms (colour jitter, grayscale, blur, solarize)
    and 3-channel encoders then apply unchanged.

    **Required keys:** ``img`` (H, W) or (H, W, 1); (H, W, 3) passes unchanged.
    **Modified keys:** ``img`` (H, W, 3), ``img_shape``.
    """

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.ndim == 3 and img.shape[2] == 3:
            return results
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[..., 0]
        if img.ndim != 2:
            raise ValueError(f'GrayToBGR expects an (H, W) or (H, W, 1) image, got '
                             f'shape {img.shape}')
        results['img'] = np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2))
        results['img_shape'] = img.shape[:2]
        return results
