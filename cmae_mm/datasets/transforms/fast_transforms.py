"""MMPretrain / MMCV augmentations computed with fewer copies and conversions.

Each class takes the same arguments, makes the same random draws and returns the same
bytes as the transform it subclasses (``tests/test_fast_transforms.py``); only the
numpy <-> Pillow round trips and strided copies are fewer. Measured with
``tools/analysis/benchmark_pretrain.py --pipeline`` (``docs/performance.md``).
"""
from typing import Dict

import cv2
import numpy as np
from mmcv.image.geometric import pillow_interp_codes
from mmcv.transforms import RandomGrayscale
from mmpretrain.datasets.transforms import ColorJitter, RandomResizedCrop
from mmpretrain.registry import TRANSFORMS
from PIL import Image, ImageEnhance


@TRANSFORMS.register_module()
class FastColorJitter(ColorJitter):
    """MMPretrain's ``ColorJitter(backend='pillow')`` with one conversion each way.

    Same arguments, same random draws (the parent's ``_rand_params``: a random order
    of brightness, contrast, saturation and hue, each factor uniform in its range)
    and the same output, bit for bit (``tests/test_fast_transforms.py``). MMCV's
    Pillow functions (``mmcv.adjust_brightness`` ... ``mmcv.adjust_hue``) each turn
    the BGR array into an RGB Pillow image and back, reversing the channels with a
    strided numpy copy; this class converts once, with OpenCV, and chains the four
    Pillow enhancements. With the other Fast* transforms it takes CMAE's pipeline
    from about 100 to about 131 images per second per core
    (``tools/analysis/benchmark_pretrain.py --pipeline``, ``docs/performance.md``).

    **Required keys:** ``img``, uint8 (H, W, 3), BGR. Other inputs (float, gray)
    go through the parent unchanged.

    **Modified keys:** ``img``, uint8 (H, W, 3), BGR, C-contiguous.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.backend != 'pillow':
            raise ValueError(
                f"FastColorJitter computes with Pillow; got backend="
                f"'{self.backend}'. Use MMPretrain's ColorJitter for other backends.")

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            return super().transform(results)
        trans_inds, brightness, contrast, saturation, hue = self._rand_params()
        pil = Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), mode='RGB')
        for index in trans_inds:
            if index == 0 and brightness is not None:
                pil = ImageEnhance.Brightness(pil).enhance(brightness)
            elif index == 1 and contrast is not None:
                pil = ImageEnhance.Contrast(pil).enhance(contrast)
            elif index == 2 and saturation is not None:
                pil = ImageEnhance.Color(pil).enhance(saturation)
            elif index == 3 and hue is not None:
                pil = self._shift_hue(pil, hue)
        results['img'] = cv2.cvtColor(np.asarray(pil), cv2.COLOR_RGB2BGR)
        return results

    @staticmethod
    def _shift_hue(pil: Image.Image, hue_factor: float) -> Image.Image:
        """``mmcv.adjust_hue``'s Pillow branch on an RGB image: H += factor * 255
        (uint8, wrapping)."""
        h, s, v = pil.convert('HSV').split()
        np_h = np.array(h, dtype=np.uint8)
        with np.errstate(over='ignore'):
            np_h += np.uint8(hue_factor * 255)
        return Image.merge('HSV', (Image.fromarray(np_h, 'L'), s, v)).convert('RGB')


@TRANSFORMS.register_module()
class FastRandomResizedCrop(RandomResizedCrop):
    """MMPretrain's ``RandomResizedCrop(backend='pillow')``, cropping in Pillow.

    Same arguments, random draws (the parent's ``rand_crop_params``) and output, bit
    for bit. The parent crops a numpy view and hands it to ``mmcv.imresize``, where
    ``Image.fromarray`` copies the non-contiguous view through ``ndarray.tobytes``
    (about 1.4 ms for an ImageNet-sized crop); this class builds the Pillow image from
    the whole contiguous array and crops in Pillow (about 0.1 ms), then resizes with
    the same filter.

    **Required keys:** ``img``, uint8 (H, W, C). Other inputs go through the parent.

    **Modified keys:** ``img`` (scale_h, scale_w, C), ``img_shape``.
    """

    def transform(self, results: dict) -> dict:
        img = results['img']
        if self.backend != 'pillow' or img.dtype != np.uint8:
            return super().transform(results)
        offset_h, offset_w, target_h, target_w = self.rand_crop_params(img)
        pil = Image.fromarray(img).crop(
            (offset_w, offset_h, offset_w + target_w, offset_h + target_h))
        pil = pil.resize(
            tuple(self.scale[::-1]), pillow_interp_codes[self.interpolation])
        img = np.array(pil)
        results['img'] = img
        results['img_shape'] = img.shape
        return results


@TRANSFORMS.register_module()
class FastRandomGrayscale(RandomGrayscale):
    """MMCV's ``RandomGrayscale`` for BGR images, without the (H, W, 3) float temporary.

    Same arguments, random draw and output, bit for bit: the gray value is
    ``uint8(w0 * b + w1 * g + w2 * r)`` with the normalised ``channel_weights``,
    summed in the parent's order (checked for all 2**24 colours), written as three
    products of (H, W) planes instead of a weighted (H, W, 3) sum (about 0.3 ms instead
    of 1.6 ms at 224 x 224).

    **Required keys:** ``img``, (H, W, 3) BGR. Other inputs (HSV, gray) go through
    the parent.

    **Modified keys:** ``img``, uint8 (H, W, 3) with ``keep_channels``, else (H, W).
    """

    def transform(self, results: dict) -> dict:
        img = results['img']
        if self.color_format != 'bgr' or img.ndim != 3 or img.shape[2] != 3:
            return super().transform(results)
        if self._random_prob() >= self.prob:
            results['img'] = img.astype('uint8')
            return results
        w = np.array(self.channel_weights) / sum(self.channel_weights)
        gray = (w[0] * img[..., 0] + w[1] * img[..., 1] +
                w[2] * img[..., 2]).astype('uint8')
        results['img'] = np.repeat(gray[..., None], 3, axis=2) \
            if self.keep_channels else gray
        return results
