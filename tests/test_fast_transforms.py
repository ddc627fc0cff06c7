"""The Fast* transforms return what the MMPretrain / MMCV transforms they replace
return, bit for bit, for the same random state; the recipes' whole pipelines too."""
import copy
import os
import os.path as osp
import random

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope
from mmpretrain.registry import TRANSFORMS

import cmae_mm  # noqa: F401
from cmae_mm.datasets.transforms.pixel_shift import contiguous
from cmae_mm.testing.photos import load_photos

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: (fast transform, the transform it replaces) for the recipes' dataset configs
REPLACED = {
    'FastColorJitter': 'ColorJitter',
    'FastRandomResizedCrop': 'RandomResizedCrop',
    'FastRandomGrayscale': 'RandomGrayscale',
}


@pytest.fixture(scope='module')
def images():
    """The bundled photographs, BGR, at an ImageNet-like 500 x 375 and at 224."""
    photos = [np.ascontiguousarray(p[..., ::-1]) for p in load_photos().values()]
    return ([cv2.resize(p, (500, 375), interpolation=cv2.INTER_AREA) for p in photos],
            [cv2.resize(p, (224, 224), interpolation=cv2.INTER_AREA) for p in photos])


def _seed(seed: int) -> None:
    """numpy's and Python's generators (MMCV's RandomGrayscale draws from the
    latter)."""
    np.random.seed(seed)
    random.seed(seed)


def _same_outputs(fast: dict, original: dict, imgs, seeds=range(60)):
    init_default_scope('mmpretrain')
    a, b = TRANSFORMS.build(fast), TRANSFORMS.build(original)
    for seed in seeds:
        img = imgs[seed % len(imgs)]
        _seed(seed)
        ra = a(dict(img=img.copy(), img_shape=img.shape[:2]))
        next_a = np.random.rand(), random.random()
        _seed(seed)
        rb = b(dict(img=img.copy(), img_shape=img.shape[:2]))
        next_b = np.random.rand(), random.random()
        assert ra['img'].dtype == rb['img'].dtype
        np.testing.assert_array_equal(ra['img'], rb['img'], err_msg=f'seed {seed}')
        assert ra['img_shape'] == rb['img_shape']
        assert next_a == next_b  # both consumed the same random numbers


@pytest.mark.parametrize(
    'kwargs',
    [
        dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),  # CMAE
        dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1),  # ConMIM
        dict(brightness=(0.5, 1.5), hue=0.5),
    ])
def test_color_jitter_equals_mmpretrain(images, kwargs):
    _same_outputs(
        dict(type='FastColorJitter', **kwargs), dict(type='ColorJitter', **kwargs),
        images[1])


def test_color_jitter_refuses_other_backends():
    with pytest.raises(ValueError, match="backend='cv2'"):
        TRANSFORMS.build(dict(type='FastColorJitter', brightness=0.4, backend='cv2'))


@pytest.mark.parametrize(
    'kwargs',
    [
        dict(scale=256, crop_ratio_range=(0.2, 1.0), interpolation='bicubic'),  # CMAE
        dict(scale=224, crop_ratio_range=(0.08, 1.0),
             interpolation='bicubic'),  # ConMIM
        dict(scale=(192, 160), interpolation='bilinear'),
    ])
def test_random_resized_crop_equals_mmpretrain(images, kwargs):
    _same_outputs(
        dict(type='FastRandomResizedCrop', backend='pillow', **kwargs),
        dict(type='RandomResizedCrop', backend='pillow', **kwargs), images[0])


@pytest.mark.parametrize('keep_channels', [True, False])
def test_random_grayscale_equals_mmcv(images, keep_channels):
    kwargs = dict(
        prob=0.5, keep_channels=keep_channels, channel_weights=(0.114, 0.587, 0.2989))
    _same_outputs(
        dict(type='FastRandomGrayscale', **kwargs),
        dict(type='RandomGrayscale', **kwargs), images[1])


def test_grayscale_formula_for_every_colour():
    """The three-plane sum equals the parent's (H, W, 3) weighted sum for all 2**24
    BGR colours (the bit-for-bit claim of the docstring)."""
    init_default_scope('mmpretrain')
    fast = TRANSFORMS.build(
        dict(
            type='FastRandomGrayscale',
            prob=1.0,
            keep_channels=False,
            channel_weights=(0.114, 0.587, 0.2989)))
    v = np.arange(256, dtype=np.uint8)
    every = np.stack(np.meshgrid(v, v, v, indexing='ij'), -1).reshape(4096, 4096, 3)
    w = np.array((0.114, 0.587, 0.2989)) / sum((0.114, 0.587, 0.2989))
    expected = (w * every).sum(axis=2).astype('uint8')
    np.testing.assert_array_equal(fast(dict(img=every))['img'], expected)


def test_contiguous_keeps_the_bytes():
    img = np.random.RandomState(0).randint(0, 256, (40, 30, 3), dtype=np.uint8)
    for view in (np.flip(img, 1), np.flip(img, 0), img[::2, 1:], img):
        out = contiguous(view)
        assert out.flags.c_contiguous
        np.testing.assert_array_equal(out, view)
    assert contiguous(img) is img


@pytest.mark.parametrize('config,pipeline', [
    ('configs/pretrain/cmae_vit-b.py', 'train_pipeline'),
    ('configs/pretrain/cmae_vit-b.py', 'cpu_train_pipeline'),
    ('configs/pretrain/conmim_vit-base-p16_8xb256-amp-coslr-300e_in1k.py',
     'train_pipeline'),
    ('configs/pretrain/conmim_vit-base-p16_8xb256-amp-coslr-300e_in1k.py',
     'cpu_train_pipeline'),
    ('configs/pretrain/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py',
     'train_pipeline'),
])
def test_recipe_pipelines_equal_the_mmpretrain_transforms(config, pipeline,
                                                          photo_folder):
    """The recipe's pipelines (augmentation on the device: the workers' part; all on
    the CPU), and the same with each Fast* transform swapped back to the MMPretrain /
    MMCV one, give the same tensors from the same seed."""
    cfg = Config.fromfile(osp.join(REPO, config))
    fast_cfg = cfg[pipeline]
    original_cfg = copy.deepcopy(fast_cfg)

    def swap(node):
        if isinstance(node, dict):
            if node.get('type') in REPLACED:
                node['type'] = REPLACED[node['type']]
            for value in node.values():
                swap(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                swap(value)

    swap(original_cfg)
    assert 'Fast' in str(fast_cfg) and 'Fast' not in str(original_cfg)
    init_default_scope('mmpretrain')
    pipes = [
        Compose([TRANSFORMS.build(t) for t in p]) for p in (fast_cfg, original_cfg)
    ]
    files = sorted(
        osp.join(photo_folder, f) for f in os.listdir(photo_folder)
        if f.endswith('.jpg'))
    for i in range(12):
        out = []
        for pipe in pipes:
            _seed(i)
            out.append(pipe(dict(img_path=files[i % len(files)], sample_idx=i)))
        a, b = out[0]['inputs'], out[1]['inputs']
        a, b = (a, b) if isinstance(a, list) else ([a], [b])
        for x, y in zip(a, b):
            assert x.shape == y.shape and bool((x == y).all()), f'{config}, image {i}'
