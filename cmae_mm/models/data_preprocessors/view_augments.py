"""Batched view augmentations with per-sample random parameters, on any device.

Each op reproduces one CPU transform of the pretraining recipes
(``configs/_base_/datasets/imagenet_{cmae,conmim}.py``) on a whole batch, with its own
random parameters for every sample drawn from the CPU transform's distributions
(``tests/test_view_augments.py`` checks both: the values against Pillow / MMCV for
fixed parameters, the draws against the CPU transforms' with statistical tests).

Images are float (B, 3, H, W) RGB in [0, 255] (the data preprocessor converts the
pipeline's BGR uint8); any float dtype, computed in float32 when given half
precision and returned in the input's dtype. An op is::

    params = op.draw(batch_size, generator)  # tensors on generator.device
    out = op.apply(imgs, params)             # deterministic given params
    out = op(imgs, generator)                # both

Per-step code only: no host-device synchronisation (no ``.item()``, no boolean-mask
indexing, no Python branch on a tensor value); samples not drawn for an op are
selected with ``torch.where``, bit for bit unchanged.

Known deviations from the CPU pipeline, under one grey level on average
(measured and bounded in ``tests/test_view_augments.py``):

- no uint8 rounding between ops: Pillow truncates every blend to uint8 (up to
  1 level, 0.4 on average, per op) and quantises H and S to 8 bits in its HSV
  round trip (up to 5 levels on saturated colours even for a zero shift);
- the hue shift is the drawn factor itself; Pillow adds ``uint8(factor * 255)``
  (a multiple of 1/255 turn);
- the blur is a true (sampled) Gaussian; Pillow's ``GaussianBlur`` is three
  extended box blurs of the same variance, each padded with the edge of its own
  input (see :class:`BatchGaussianBlur`).
"""
import math
from numbers import Number
from typing import Dict, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmpretrain.datasets.transforms import ColorJitter
from mmpretrain.registry import BATCH_AUGMENTS
from torch import Tensor

__all__ = [
    'BatchViewAugment', 'BatchRandomFlip', 'BatchShiftedCrop', 'BatchColorJitter',
    'BatchRandomGrayscale', 'BatchGaussianBlur', 'BatchSolarize'
]

Params = Dict[str, Tensor]
#: Pillow's L = R * 299/1000 + G * 587/1000 + B * 114/1000 (``Image.convert('L')``;
#: ``src/libImaging/Convert.c`` uses these weights in 16-bit fixed point)
PIL_L_WEIGHTS = (0.299, 0.587, 0.114)


def _per_sample(values: Tensor, like: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, 1), in ``like``'s dtype, for broadcasting over images."""
    return values.to(like.dtype).view(-1, 1, 1, 1)


def _luma(x: Tensor, weights: Sequence[float]) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W): the weighted sum of the channels (Python
    weights: no host-to-device copy)."""
    return weights[0] * x[:, 0:1] + weights[1] * x[:, 1:2] + weights[2] * x[:, 2:3]


def _shift_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the HSV hue of (B, 3, H, W) RGB by ``shift`` (B,) turns; S, V kept.

    H (in sixths of a turn) as Pillow's ``rgb2hsv`` (``src/libImaging/Convert.c``,
    after Python's ``colorsys``: red, then green, then blue wins a tie for the
    maximum); back to RGB in closed form: a channel is V where the hue is within
    1/6 turn of its primary (R 0, G 2/6, B 4/6), V - V S beyond 2/6, linear
    between (``colorsys.hsv_to_rgb``'s sector table). A grey pixel is unchanged.
    """
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    maxc, minc = x.amax(1, keepdim=True), x.amin(1, keepdim=True)
    chroma = maxc - minc
    num = torch.where(r == maxc, g - b,
                      torch.where(g == maxc, 2 * chroma + b - r, 4 * chroma + r - g))
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    h6 = torch.remainder(num / safe + 6 * _per_sample(shift, x), 6)  # (B, 1, H, W)
    primaries = torch.arange(0, 6, 2, dtype=x.dtype, device=x.device)
    dist = (h6 - primaries.view(1, 3, 1, 1)).abs()
    ramp = (torch.minimum(dist, 6 - dist) - 1).clamp(0, 1)
    return maxc - chroma * ramp


class BatchViewAugment:
    """Base of the batched view augmentations: applied to each sample with
    probability ``prob``, with per-sample parameters.

    Subclasses implement ``_draw`` (the op's parameters) and ``_apply`` (the op on
    the whole batch); samples whose ``apply`` flag is False are passed through.
    Subclasses are registered in MMPretrain's ``BATCH_AUGMENTS`` (built by
    ``MultiViewDataPreprocessor``) but take ``(imgs, generator)``, not MMPretrain's
    ``(inputs, data_samples)`` of Mixup and CutMix.

    Args:
        prob (float): Probability of applying the op to a sample.
    """

    #: channels the op needs (None: any)
    channels = 3

    def __init__(self, prob: float = 1.0) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'{type(self).__name__}: prob must be in [0, 1], got '
                             f'{prob}; set a probability such as 0.5.')
        self.prob = float(prob)

    def draw(self, batch_size: int, generator: torch.Generator) -> Params:
        """Per-sample parameters, drawn with ``generator`` on its device: ``apply``
        (B,) bool (True with probability ``prob``) and the op's own."""
        apply = torch.rand(
            batch_size, generator=generator, device=generator.device) < self.prob
        return dict(apply=apply, **self._draw(batch_size, generator))

    def apply(self, imgs: Tensor, params: Params) -> Tensor:
        """The op on (B, C, H, W) float images with ``params`` (see ``draw``);
        same dtype out, samples with ``apply`` False unchanged."""
        self._check(imgs, params)
        x = imgs.float() if imgs.dtype in (torch.float16, torch.bfloat16) else imgs
        out = self._apply(x, params)
        if out.shape == x.shape:  # (a crop changes the shape and applies to all)
            out = torch.where(params['apply'].view(-1, 1, 1, 1), out, x)
        return out.to(imgs.dtype)

    def __call__(self, imgs: Tensor, generator: torch.Generator) -> Tensor:
        if generator.device != imgs.device:
            raise ValueError(
                f'{type(self).__name__}: the generator is on {generator.device}, '
                f'the images on {imgs.device}; create the generator on the images\' '
                f'device (torch.Generator(device=imgs.device)).')
        return self.apply(imgs, self.draw(len(imgs), generator))

    def _draw(self, batch_size: int, generator: torch.Generator) -> Params:
        return {}

    def _apply(self, x: Tensor, params: Params) -> Tensor:
        raise NotImplementedError

    def _check(self, imgs: Tensor, params: Params) -> None:
        name = type(self).__name__
        if not (torch.is_tensor(imgs) and imgs.is_floating_point() and imgs.ndim == 4):
            raise TypeError(
                f'{name} takes float images (B, C, H, W) in [0, 255], got '
                f'{type(imgs).__name__} {getattr(imgs, "dtype", "")} of shape '
                f'{tuple(getattr(imgs, "shape", ()))}; convert with imgs.float().')
        if self.channels is not None and imgs.shape[1] != self.channels:
            raise ValueError(f'{name} needs {self.channels} (RGB) channels, got '
                             f'images of shape {tuple(imgs.shape)}.')
        if params['apply'].shape != imgs.shape[:1]:
            raise ValueError(
                f'{name}: parameters drawn for {len(params["apply"])} samples, '
                f'images have {len(imgs)}; draw with the batch size of the images.')


@BATCH_AUGMENTS.register_module()
class BatchRandomFlip(BatchViewAugment):
    """MMCV's ``RandomFlip(prob, direction='horizontal')`` per sample
    (``mmcv/transforms/processing.py``): each sample mirrored left-right with
    probability ``prob``. Params: ``apply`` (B,)."""

    channels = None

    def __init__(self, prob: float = 0.5) -> None:
        super().__init__(prob)

    def _apply(self, x: Tensor, params: Params) -> Tensor:
        return x.flip(-1)


@BATCH_AUGMENTS.register_module()
class BatchShiftedCrop(BatchViewAugment):
    """CMAE's ``PixelShift`` crops (``cmae_mm/datasets/transforms/pixel_shift.py``):
    a ``size`` x ``size`` crop of each sample at its own offset (dy, dx), each
    uniform over ``0..max_shift`` inclusive. ``max_shift=0``: the top-left crop
    (CMAE's online view).

    Params: ``apply`` (B,) all True, ``dy``, ``dx`` (B,) int64.
    (B, C, H, W) -> (B, C, size, size); needs H, W >= size + max_shift.
    """

    channels = None

    def __init__(self, size: int = 224, max_shift: int = 31) -> None:
        super().__init__(1.0)
        if size < 1 or max_shift < 0:
            raise ValueError(f'BatchShiftedCrop needs size >= 1 and max_shift >= 0, '
                             f'got size={size}, max_shift={max_shift}.')
        self.size, self.max_shift = size, max_shift

    def _draw(self, batch_size: int, generator: torch.Generator) -> Params:
        dy, dx = torch.randint(
            0,
            self.max_shift + 1, (2, batch_size),
            generator=generator,
            device=generator.device)
        return dict(dy=dy, dx=dx)

    def _apply(self, x: Tensor, params: Params) -> Tensor:
        b, c, h, w = x.shape
        s, need = self.size, self.size + self.max_shift
        if h < need or w < need:
            raise ValueError(
                f'BatchShiftedCrop cannot fit: a {s}px crop shifted by up to '
                f'{self.max_shift}px needs images of at least {need}x{need}, got '
                f'{h}x{w}. Resize to >= {need} in the pipeline (CMAE: '
                f'RandomResizedCrop(scale=256)) or lower size/max_shift.')
        steps = torch.arange(s, device=x.device)
        rows = (params['dy'].view(b, 1) + steps).view(b, 1, s, 1).expand(b, c, s, w)
        cols = (params['dx'].view(b, 1) + steps).view(b, 1, 1, s).expand(b, c, s, s)
        return x.gather(2, rows).gather(3, cols)


@BATCH_AUGMENTS.register_module()
class BatchColorJitter(BatchViewAugment):
    """``RandomApply([ColorJitter(brightness, contrast, saturation, hue)], prob)``
    per sample: MMPretrain's ``ColorJitter`` with the Pillow backend
    (``mmpretrain/datasets/transforms/processing.py``; cmae_mm's ``FastColorJitter``
    computes the same bytes) inside MMCV's ``RandomApply``.

    Draws as ``ColorJitter._rand_params``: a uniformly random order of the four ops
    per sample, brightness / contrast / saturation factors uniform in
    ``[max(0, 1 - v), 1 + v]`` (or the given (min, max)), the hue factor uniform in
    ``[-h, h]``; the ranges are validated by MMPretrain's ``ColorJitter`` itself.
    The ops, as ``mmcv.adjust_brightness / contrast / color / hue`` (Pillow
    ``ImageEnhance``, ``Image.blend`` clipped to [0, 255]):

    - brightness: ``f * x``;
    - contrast: blend with the rounded mean of Pillow's L (0.299 R + 0.587 G +
      0.114 B) over the image;
    - saturation (``ImageEnhance.Color``): blend with L, per pixel;
    - hue: the HSV hue rotated by the factor, in turns.

    Computed in four rounds; in round r each sample applies its r-th op and the
    others with identity factors (brightness, contrast and saturation as one blend,
    then the hue shift). Params: ``apply`` (B,), ``order`` (B, 4) int64
    (``order[b, r]``: index of the op of round r; 0 brightness, 1 contrast,
    2 saturation, 3 hue), ``brightness``, ``contrast``, ``saturation``, ``hue`` (B,)
    float32 (identity values for a disabled kind).
    """

    def __init__(self,
                 brightness: Union[float, Sequence[float]] = 0.,
                 contrast: Union[float, Sequence[float]] = 0.,
                 saturation: Union[float, Sequence[float]] = 0.,
                 hue: Union[float, Sequence[float]] = 0.,
                 prob: float = 1.0) -> None:
        super().__init__(prob)
        ranges = ColorJitter(brightness, contrast, saturation, hue)
        self.ranges: Dict[str, Tuple[float, float]] = {
            name: getattr(ranges, name)
            for name in ('brightness', 'contrast', 'saturation', 'hue')
        }

    def _draw(self, batch_size: int, generator: torch.Generator) -> Params:
        kw = dict(generator=generator, device=generator.device)
        u = torch.rand(4, batch_size, **kw)
        params = dict(order=torch.argsort(torch.rand(batch_size, 4, **kw), dim=1))
        for i, (name, span) in enumerate(self.ranges.items()):
            lo, hi = span or ((0., 0.) if name == 'hue' else (1., 1.))
            params[name] = lo + (hi - lo) * u[i]
        return params

    def _apply(self, x: Tensor, params: Params) -> Tensor:
        for r in range(4):
            op = params['order'][:, r]
            x = self._enhance(
                x, *[
                    torch.where(op == i, params[name], torch.ones_like(params[name]))
                    for i, name in enumerate(('brightness', 'contrast', 'saturation'))
                ])
            if self.ranges['hue'] is not None:  # (config, not data)
                hue = params['hue']
                x = _shift_hue(x, torch.where(op == 3, hue, torch.zeros_like(hue)))
        return x

    @staticmethod
    def _enhance(x: Tensor, brightness: Tensor, contrast: Tensor,
                 saturation: Tensor) -> Tensor:
        """Pillow's ``ImageEnhance.Brightness / Contrast / Color`` with factors
        (B,), at most one of them not 1 per sample, as one blend: ``f x + (1 - c)
        mean(L) + (1 - s) L`` (f = b c s), clipped to [0, 255]."""
        luma = _luma(x, PIL_L_WEIGHTS)
        mean = luma.mean((2, 3), keepdim=True).round()
        b, c, s = (_per_sample(v, x) for v in (brightness, contrast, saturation))
        return (b * c * s * x + (1 - c) * mean + (1 - s) * luma).clamp(0, 255)


@BATCH_AUGMENTS.register_module()
class BatchRandomGrayscale(BatchViewAugment):
    """MMCV's ``RandomGrayscale(prob, keep_channels=True, channel_weights)``
    per sample (``mmcv/transforms/processing.py``): the normalised weighted sum of
    the channels, in all three. Params: ``apply`` (B,).

    ``channel_weights`` are in RGB order: the CPU recipes give BGR weights for the
    BGR image, ``(0.114, 0.587, 0.2989)``, i.e. ``(0.2989, 0.587, 0.114)`` here
    (reversed). MMCV truncates the sum to uint8; here it stays float.
    """

    def __init__(
        self,
        prob: float = 0.2,
        channel_weights: Sequence[float] = (0.2989, 0.587, 0.114)
    ) -> None:
        super().__init__(prob)
        if len(channel_weights) != 3 or sum(channel_weights) <= 0:
            raise ValueError(f'BatchRandomGrayscale needs three RGB channel_weights '
                             f'with a positive sum, got {channel_weights}.')
        total = float(sum(channel_weights))
        self.channel_weights = tuple(float(w) / total for w in channel_weights)

    def _apply(self, x: Tensor, params: Params) -> Tensor:
        return _luma(x, self.channel_weights).expand_as(x)


@BATCH_AUGMENTS.register_module()
class BatchGaussianBlur(BatchViewAugment):
    """MMPretrain's ``GaussianBlur(magnitude_range=sigma_range, magnitude_std='inf',
    prob)`` per sample (``mmpretrain/datasets/transforms/auto_augment.py``):
    sigma uniform in ``sigma_range``, blur by Pillow's
    ``ImageFilter.GaussianBlur(radius=sigma)`` (``radius`` is the standard
    deviation there).

    Here a true Gaussian, sampled at integer offsets within ``ceil(3 * max sigma)``
    and normalised, applied separably (grouped convolutions with per-sample kernels)
    with replicate padding. Pillow runs three extended box blurs of variance
    sigma**2 / 3 per axis (``src/libImaging/BoxBlur.c``, after Gwosdek et al.,
    SSVM 2011), rounding to uint8 after each and padding each with the edge of
    its own input. Differences (96 px photographs): under 1 level on average; away
    from the border at most 3 to 5 levels for sigma >= 0.5, up to 21 on sharp
    edges near sigma 0.3 (the sampled kernel's variance falls below sigma**2 for
    small sigma: 0.008 at 0.3); within 3 sigma of the border up to 30 levels
    (Pillow's per-pass padding darkens a bright edge more). On a GPU, convolutions
    may run in TF32 (``torch.backends.cudnn.allow_tf32``): about 0.1 level.

    Params: ``apply`` (B,), ``sigma`` (B,) float32.
    """

    def __init__(self,
                 sigma_range: Tuple[float, float] = (0.1, 2.0),
                 prob: float = 0.5) -> None:
        super().__init__(prob)
        lo, hi = sigma_range
        if not 0 < lo <= hi:
            raise ValueError(f'BatchGaussianBlur needs 0 < min <= max in sigma_range,'
                             f' got {sigma_range}.')
        self.sigma_range = (float(lo), float(hi))
        self.radius = math.ceil(3 * hi)

    def _draw(self, batch_size: int, generator: torch.Generator) -> Params:
        lo, hi = self.sigma_range
        u = torch.rand(batch_size, generator=generator, device=generator.device)
        return dict(sigma=lo + (hi - lo) * u)

    def _apply(self, x: Tensor, params: Params) -> Tensor:
        b, c, h, w = x.shape
        r = self.radius
        offsets = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
        sigma = params['sigma'].to(x.dtype).view(b, 1)
        kernel = torch.exp(-0.5 * (offsets / sigma)**2)
        kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)
        y = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode='replicate')
        y = F.conv2d(y, kernel.view(b * c, 1, 1, 2 * r + 1), groups=b * c)
        y = F.conv2d(y, kernel.view(b * c, 1, 2 * r + 1, 1), groups=b * c)
        return y.view(b, c, h, w)


@BATCH_AUGMENTS.register_module()
class BatchSolarize(BatchViewAugment):
    """MMPretrain's ``Solarize(thr, prob)`` per sample
    (``mmpretrain/datasets/transforms/auto_augment.py``, ``mmcv.solarize``): values
    ``>= thr`` become ``255 - value``. Params: ``apply`` (B,)."""

    channels = None

    def __init__(self, thr: Number = 128, prob: float = 0.5) -> None:
        super().__init__(prob)
        self.thr = float(thr)

    def _apply(self, x: Tensor, params: Params) -> Tensor:
        return torch.where(x >= self.thr, 255 - x, x)
