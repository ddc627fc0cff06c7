"""The batched device augmentations (cmae_mm/models/data_preprocessors/
view_augments.py) against the CPU transforms of the pretraining recipes: values for
fixed parameters, distributions of the drawn parameters, dtypes and devices."""
import random

import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import RandomApply, RandomFlip
from mmpretrain.datasets.transforms import ColorJitter, GaussianBlur, Solarize
from mmpretrain.registry import BATCH_AUGMENTS
from PIL import Image, ImageEnhance
from scipy import stats

import cmae_mm  # noqa: F401
from cmae_mm.datasets.transforms import FastColorJitter, FastRandomGrayscale, PixelShift
from cmae_mm.models.data_preprocessors import (BatchColorJitter, BatchGaussianBlur,
                                               BatchRandomFlip, BatchRandomGrayscale,
                                               BatchShiftedCrop, BatchSolarize)

SIZE = 96  # photographs resized to SIZE x SIZE: seconds, not minutes
N_DRAWS = 20000  # parameter sets per distribution test
ALPHA = 1e-3  # significance of the distribution tests (fixed seeds: deterministic)
#: the recipes' ops (CMAE's target view and ConMIM's perturbed view)
RECIPE_OPS = [
    BatchRandomFlip(0.5),
    BatchShiftedCrop(64, 31),
    BatchColorJitter(0.4, 0.4, 0.4, 0.1, prob=0.8),
    BatchRandomGrayscale(0.2),
    BatchGaussianBlur((0.1, 2.0), 0.5),
    BatchSolarize(128, 0.2),
]


@pytest.fixture(scope='module')
def rgb(photos):
    """The bundled photographs, uint8 RGB (SIZE, SIZE, 3) each."""
    return [
        cv2.resize(p, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        for p in photos.values()
    ]


@pytest.fixture(scope='module')
def batch(rgb):
    """The same as one float32 (B, 3, SIZE, SIZE) RGB batch in [0, 255]."""
    return torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float()


def fixed(batch_size: int, **values) -> dict:
    """Parameters for every sample: ``apply`` True and the given values."""
    params = dict(apply=torch.ones(batch_size, dtype=torch.bool))
    for name, value in values.items():
        value = torch.as_tensor(value)
        params[name] = value.expand(batch_size, *value.shape)
    return params


def abs_diff(device: torch.Tensor, cpu) -> np.ndarray:
    """|device - cpu| per pixel: (B, 3, H, W) tensor vs a list of (H, W, 3)."""
    cpu = np.stack(cpu).astype(np.float64)
    return np.abs(device.permute(0, 2, 3, 1).double().numpy() - cpu)


def pillow(rgb, fn):
    return [np.asarray(fn(Image.fromarray(img))) for img in rgb]


# --- 1. values for fixed parameters -------------------------------------------------

JITTER = BatchColorJitter(0.4, 0.4, 0.4, 0.1)
IDENTITY = dict(brightness=1., contrast=1., saturation=1., hue=0.)


def jitter(batch, op: int, factor: float) -> torch.Tensor:
    """``JITTER`` with one op of factor ``factor`` first, identities for the rest."""
    order = [op] + [i for i in range(4) if i != op]
    values = dict(IDENTITY, **{list(IDENTITY)[op]: factor})
    values = {k: torch.tensor(v, dtype=torch.float32) for k, v in values.items()}
    return JITTER.apply(batch, fixed(len(batch), order=torch.tensor(order), **values))


@pytest.mark.parametrize('factor', [0.6, 1.4])
@pytest.mark.parametrize('op, enhance', [(0, ImageEnhance.Brightness),
                                         (1, ImageEnhance.Contrast),
                                         (2, ImageEnhance.Color)])
def test_brightness_contrast_saturation_match_pillow(rgb, batch, op, enhance, factor):
    """Pillow's ``Image.blend`` truncates to uint8 (under 1 level, about 0.4 on
    average); Color's grey is L rounded per pixel (a further 0.5 * |1 - factor|)."""
    d = abs_diff(
        jitter(batch, op, factor), pillow(rgb, lambda i: enhance(i).enhance(factor)))
    assert d.max() <= 1.25 and d.mean() <= 0.45, (d.max(), d.mean())


def test_contrast_blends_with_the_mean_of_l_not_128(rgb, batch):
    cpu = pillow(rgb, lambda i: ImageEnhance.Contrast(i).enhance(1.4))
    about_128 = (128 + 1.4 * (batch - 128)).clamp(0, 255)
    assert abs_diff(about_128, cpu).mean() > 5  # the test above tells them apart


@pytest.mark.parametrize('factor', [-0.1, -0.05, 0.0, 13 / 255, 0.1])
def test_hue_matches_pillow(rgb, batch, factor):
    """Pillow keeps H and S in 8 bits (truncated): H is up to 1/255 turn low, which
    moves the middle channel of a pixel by up to 6/255 of its chroma (6 levels);
    the shift is ``uint8(factor * 255)``, a further 1/255 turn for factors between
    multiples of 1/255 (0.1, -0.05). Mean error well under a level."""
    cpu = pillow(rgb, lambda i: FastColorJitter._shift_hue(i, factor))
    d = abs_diff(jitter(batch, 3, factor), cpu)
    assert d.max() <= 12 and d.mean() <= 0.6, (d.max(), d.mean())
    if factor:  # the opposite direction is far off
        assert abs_diff(jitter(batch, 3, -factor), cpu).mean() > 5


def test_color_jitter_matches_fast_color_jitter(rgb):
    """The whole jitter with MMPretrain's draws (random order), vs cmae_mm's
    ``FastColorJitter`` on the BGR image: the four ops' truncations add up (1.5
    levels on average, device brighter), hue's 8-bit H as above."""
    cpu_jitter = FastColorJitter(0.4, 0.4, 0.4, 0.1)
    means, maxes = [], []
    for seed in range(27):
        img = rgb[seed % len(rgb)]
        np.random.seed(seed)
        order, *factors = cpu_jitter._rand_params()
        np.random.seed(seed)
        cpu = cpu_jitter.transform(dict(img=img[..., ::-1].copy()))['img'][..., ::-1]
        values = dict(
            zip(IDENTITY,
                torch.tensor(factors, dtype=torch.float32)[:, None]))
        params = dict(
            apply=torch.ones(1, dtype=torch.bool),
            order=torch.as_tensor(order)[None],
            **values)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
        d = abs_diff(JITTER.apply(x, params), [cpu])
        means.append(d.mean())
        maxes.append(d.max())
    assert np.mean(means) <= 2.0 and max(means) <= 2.5 and max(maxes) <= 15, (
        np.mean(means), max(means), max(maxes))


def test_grayscale_matches_fast_random_grayscale(rgb, batch):
    """MMCV truncates the weighted sum to uint8: up to 1 level (a grey 255 may sum
    to 254.99...), 0.5 on average. The recipes' BGR weights reversed are the RGB
    weights (the default); the BGR weights on RGB are far off."""
    cpu_gray = FastRandomGrayscale(
        prob=1.0, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989))
    cpu = [cpu_gray.transform(dict(img=img[..., ::-1].copy()))['img'] for img in rgb]
    gray = BatchRandomGrayscale(1.0)
    d = abs_diff(gray.apply(batch, fixed(len(batch))), cpu)
    assert d.max() <= 1 and d.mean() <= 0.55, (d.max(), d.mean())
    wrong = BatchRandomGrayscale(1.0, channel_weights=(0.114, 0.587, 0.2989))
    assert abs_diff(wrong.apply(batch, fixed(len(batch))), cpu).mean() > 5


#: sigma -> (bound of the mean, of the max away from the border, of the max)
BLUR_BOUNDS = {
    0.3: (1.0, 22, 22),
    0.5: (0.7, 5, 5),
    1.0: (0.7, 3, 10),
    2.0: (0.6, 5, 30)
}


@pytest.mark.parametrize('sigma', sorted(BLUR_BOUNDS))
def test_gaussian_blur_matches_pillow(rgb, batch, sigma):
    """MMPretrain's ``GaussianBlur`` (Pillow, ``radius`` = sigma: three extended box
    blurs of variance sigma**2, rounded after each) vs a sampled Gaussian. Mean
    under a level; away from the border, a few levels, except at 0.3, where the
    sampled kernel has a tenth of Pillow's variance (0.008) and Pillow's blur
    shows on sharp edges; at the border Pillow replicates the edge of every pass's
    output, the Gaussian that of the image, up to 30 levels within 3 sigma of it.
    Twice or half the sigma is far off (sigma vs radius confusions)."""
    cpu_blur = GaussianBlur(radius=sigma, prob=1.0)
    cpu = [cpu_blur.transform(dict(img=img))['img'] for img in rgb]
    blur = BatchGaussianBlur((0.1, 4.0))
    d = abs_diff(blur.apply(batch, fixed(len(batch), sigma=sigma)), cpu)
    inner = d[:, 7:-7, 7:-7]
    mean, inner_max, all_max = BLUR_BOUNDS[sigma]
    assert d.mean() <= mean and inner.max() <= inner_max and d.max() <= all_max, (
        d.mean(), inner.max(), d.max())
    if sigma >= 0.5:
        for wrong in (sigma * 2, sigma / 2):
            d = abs_diff(blur.apply(batch, fixed(len(batch), sigma=wrong)), cpu)
            assert d.mean() > 2.5


def test_solarize_flip_and_crops_are_exact(rgb, batch):
    cpu = [Solarize(thr=128, prob=1.0).transform(dict(img=img))['img'] for img in rgb]
    assert abs_diff(BatchSolarize(128, 1.0).apply(batch, fixed(len(batch))),
                    cpu).max() == 0
    edge = torch.tensor([127.5, 128., 200.]).view(1, 3, 1, 1)  # mmcv: >= thr
    solarized = BatchSolarize(128, 1.0).apply(edge, fixed(1))
    assert solarized.flatten().tolist() == [127.5, 127., 55.]

    cpu = [RandomFlip(prob=1.0).transform(dict(img=img))['img'] for img in rgb]
    assert abs_diff(BatchRandomFlip(1.0).apply(batch, fixed(len(batch))),
                    cpu).max() == 0

    shift = PixelShift(view_size=64, max_shift=31)
    crop, online = BatchShiftedCrop(64, 31), BatchShiftedCrop(64, 0)
    for seed, img in enumerate(rgb):
        np.random.seed(seed)
        views = shift.transform(dict(img=img))
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
        dy, dx = views['pixel_shift']
        target = crop.apply(x, fixed(1, dy=dy, dx=dx))
        assert abs_diff(target, [views['img'][1]]).max() == 0
        top_left = online.apply(x, online.draw(1, torch.Generator()))
        assert abs_diff(top_left, [views['img'][0]]).max() == 0


# --- 2. distributions of the parameters ---------------------------------------------


def device_draws(op, seed: int = 0) -> dict:
    params = op.draw(N_DRAWS, torch.Generator().manual_seed(seed))
    return {k: v.numpy() for k, v in params.items()}


def same_counts(a: np.ndarray, b: np.ndarray) -> float:
    """p of a chi-square test that two samples of categories share a distribution."""
    cats = np.union1d(a, b)
    table = [[np.sum(a == c) for c in cats], [np.sum(b == c) for c in cats]]
    return stats.chi2_contingency(table).pvalue


def rate_p(flags: np.ndarray, prob: float) -> float:
    return stats.binomtest(int(flags.sum()), len(flags), prob).pvalue


def test_color_jitter_draws_match_mmpretrain():
    """``RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), prob=0.8)``: the apply rate,
    each factor (two-sample KS) and the order (24 permutations, chi-square)."""
    np.random.seed(0)
    cpu_jitter, cpu_apply = ColorJitter(0.4, 0.4, 0.4, 0.1), RandomApply([], 0.8)
    cpu_apply_flags = np.array([cpu_apply.random_apply() for _ in range(N_DRAWS)])
    order, *factors = zip(*[cpu_jitter._rand_params() for _ in range(N_DRAWS)])
    dev = device_draws(BatchColorJitter(0.4, 0.4, 0.4, 0.1, prob=0.8))
    assert rate_p(dev['apply'], 0.8) > ALPHA and rate_p(cpu_apply_flags, 0.8) > ALPHA
    for name, cpu in zip(IDENTITY, factors):
        assert stats.ks_2samp(dev[name], np.array(cpu)).pvalue > ALPHA, name

    def code(perm):  # a permutation of 0..3 as one of 24 numbers
        return perm @ np.array([64, 16, 4, 1])

    assert same_counts(code(dev['order']), code(np.array(order))) > ALPHA
    # the tests can fail: a brightness of 0.3 instead of 0.4, orders of one kind
    wrong = device_draws(BatchColorJitter(0.3, 0.4, 0.4, 0.1))['brightness']
    assert stats.ks_2samp(wrong, np.array(factors[0])).pvalue < ALPHA
    assert same_counts(code(np.sort(dev['order'], 1)), code(np.array(order))) < ALPHA


def test_flag_and_sigma_draws_match_mmcv_and_mmpretrain():
    """Apply rates of the flip (MMCV RandomFlip), grayscale (MMCV RandomGrayscale,
    Python's ``random``), blur and solarize (MMPretrain's ``random_disable``); the
    blur's sigma (``magnitude_std='inf'``: uniform over the range) and the crop
    offsets (``PixelShift``: uniform over 0..31)."""
    np.random.seed(1)
    random.seed(1)
    flip, gray = RandomFlip(prob=0.5), FastRandomGrayscale(prob=0.2)
    solarize = Solarize(thr=128, prob=0.2)
    cpu = {
        'flip': [flip._choose_direction() is not None for _ in range(N_DRAWS)],
        'gray': [gray._random_prob() < 0.2 for _ in range(N_DRAWS)],
        'solarize': [not solarize.random_disable() for _ in range(N_DRAWS)],
    }
    cpu_blur = GaussianBlur(magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.5)
    blur_flags, sigmas = [], []
    for _ in range(N_DRAWS):
        blur_flags.append(not cpu_blur.random_disable())
        if blur_flags[-1]:
            sigmas.append(cpu_blur.random_magnitude())
    cpu['blur'] = blur_flags
    shift = PixelShift(64, 31)
    shifts = np.array([shift._rand_shift() for _ in range(N_DRAWS)])

    ops = dict(
        flip=(BatchRandomFlip(0.5), 0.5),
        gray=(BatchRandomGrayscale(0.2), 0.2),
        solarize=(BatchSolarize(128, 0.2), 0.2),
        blur=(BatchGaussianBlur((0.1, 2.0), 0.5), 0.5))
    for seed, (name, (op, prob)) in enumerate(ops.items()):
        dev = device_draws(op, seed)
        assert rate_p(dev['apply'], prob) > ALPHA, name
        assert rate_p(np.array(cpu[name]), prob) > ALPHA, name
    dev = device_draws(ops['blur'][0])
    assert stats.ks_2samp(dev['sigma'], sigmas).pvalue > ALPHA
    assert dev['sigma'].min() >= 0.1 and dev['sigma'].max() <= 2.0
    dev = device_draws(BatchShiftedCrop(64, 31))
    assert dev['apply'].all()
    for axis, name in enumerate(('dy', 'dx')):
        assert same_counts(dev[name], shifts[:, axis]) > ALPHA
        assert set(dev[name]) == set(range(32))


# --- 3. dtypes, devices, no host synchronisation -------------------------------------


@pytest.mark.parametrize('op', RECIPE_OPS, ids=lambda op: type(op).__name__)
def test_dtypes_and_skipped_samples(batch, op):
    """float64 equals float32 to rounding; half-precision inputs are computed in
    float32 and rounded once: within half a unit in the last place of values up
    to 255 (bfloat16: 0.5, float16: 0.0625). Samples not drawn are unchanged."""
    params = op.draw(len(batch), torch.Generator().manual_seed(3))
    params['apply'] = torch.arange(len(batch)) % 2 == 0
    ref = op.apply(batch, params)
    assert ref.dtype == torch.float32
    tolerances = {torch.float64: 1e-3, torch.bfloat16: 0.5, torch.float16: 0.0625}
    for dtype, atol in tolerances.items():
        out = op.apply(batch.to(dtype), params)
        assert out.dtype == dtype and out.shape == ref.shape
        torch.testing.assert_close(out.float(), ref, atol=atol, rtol=0)
    if ref.shape == batch.shape:
        assert torch.equal(ref[1::2], batch[1::2])
        assert ref.min() >= 0 and ref.max() <= 255


def test_draws_on_the_generators_device_and_reproducible(batch):
    for op in RECIPE_OPS:
        g = torch.Generator(device='cpu').manual_seed(5)
        params = op.draw(4, g)
        assert all(v.device == g.device and len(v) == 4 for v in params.values())
        again = op.draw(4, torch.Generator().manual_seed(5))
        assert all(torch.equal(params[k], again[k]) for k in params)
        out = op(batch[:4], torch.Generator().manual_seed(5))
        assert torch.equal(out, op.apply(batch[:4], again))


def one_graph(fn, *args) -> bool:
    """Whether TorchDynamo traces ``fn`` as one graph without a break: ``.item()``,
    ``nonzero()``, boolean-mask indexing and Python branches on tensor values
    (host-device synchronisations on a GPU) each break it or end it."""
    torch._dynamo.reset()
    explained = torch._dynamo.explain(fn)(*args)
    return explained.graph_count == 1 and not explained.break_reasons


@pytest.mark.parametrize('op', RECIPE_OPS, ids=lambda op: type(op).__name__)
def test_apply_has_no_host_synchronisation(batch, op):
    params = op.draw(4, torch.Generator().manual_seed(7))
    assert one_graph(op.apply, batch[:4], params)


def test_the_graph_check_can_fail(batch):
    assert one_graph(lambda x: (x * 2).clamp(0, 255), batch[:2])
    syncing = [
        lambda x: x * x.amax().item(),
        lambda x: x[x > 100],
        lambda x: x + 1 if x.mean() > 100 else x,
        lambda x: x.nonzero(),
    ]
    for fn in syncing:
        assert not one_graph(fn, batch[:2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_without_synchronisation(batch):
    """Draws and ops on the GPU with synchronising calls made errors; the results
    equal the CPU's for the same parameters (blur: TF32 convolutions, 0.25)."""
    x = batch.cuda()
    g = torch.Generator(device='cuda').manual_seed(0)
    drawn = []
    torch.cuda.set_sync_debug_mode('error')
    try:
        for op in RECIPE_OPS:
            params = op.draw(len(x), g)
            drawn.append((params, op.apply(x, params)))
    finally:
        torch.cuda.set_sync_debug_mode('default')
    for op, (params, out) in zip(RECIPE_OPS, drawn):
        assert out.device == x.device and params['apply'].device == x.device
        cpu = op.apply(batch, {k: v.cpu() for k, v in params.items()})
        atol = 0.25 if isinstance(op, BatchGaussianBlur) else 1e-3
        torch.testing.assert_close(out.cpu(), cpu, atol=atol, rtol=0)


def test_registered_and_clear_errors(batch):
    op = BATCH_AUGMENTS.build(dict(type='BatchSolarize', thr=128, prob=0.2))
    assert isinstance(op, BatchSolarize) and op.prob == 0.2
    g = torch.Generator()
    with pytest.raises(TypeError, match='imgs.float'):
        BatchSolarize()(batch.to(torch.uint8), g)
    with pytest.raises(ValueError, match='RGB'):
        BatchRandomGrayscale()(batch[:, :1], g)
    with pytest.raises(ValueError, match='at least 95x95'):
        BatchShiftedCrop(64, 31)(batch[..., :90, :90], g)
    with pytest.raises(ValueError, match='batch size'):
        BatchSolarize().apply(batch, fixed(2))
    with pytest.raises(ValueError, match='prob'):
        BatchRandomFlip(1.5)
