"""Augmentation on the device: the views of MultiViewDataPreprocessor, its masks and
random draws, the configs' two placements (same parameters), and a model trained a
few dozen iterations either way."""
import copy
import json
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.registry import init_default_scope
from mmpretrain.models import SelfSupDataPreprocessor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import cmae_mm  # noqa: F401  (registration)
from cmae_mm.models.data_preprocessors import select_train_pipeline
from cmae_mm.testing import run_subprocess

CMAE_B = 'configs/pretrain/cmae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'
CONMIM_B = 'configs/pretrain/conmim_vit-base-p16_8xb256-amp-coslr-300e_in1k.py'
BLOCKMASK = ('configs/pretrain/'
             'conmim_vit-base-p16-blockmask_8xb256-amp-coslr-300e_in1k.py')
CMAE_DEMO = 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py'
#: device augmentation -> the CPU transform of the same recipe step
CPU_NAMES = {
    'BatchColorJitter': 'FastColorJitter',
    'BatchRandomGrayscale': 'FastRandomGrayscale',
    'BatchGaussianBlur': 'GaussianBlur',
    'BatchSolarize': 'Solarize',
}


def _preprocessor(config: str):
    init_default_scope('mmpretrain')
    return MODELS.build(Config.fromfile(config).model.data_preprocessor)


def _batch(size: int, side: int, masks: bool = False) -> dict:
    g = torch.Generator().manual_seed(size)
    imgs = torch.randint(0, 256, (size, 3, side, side), generator=g, dtype=torch.uint8)
    samples = [DataSample() for _ in range(size)]
    if masks:
        for s in samples:
            s.set_mask(torch.randint(0, 2, (14, 14), generator=g))
    return dict(inputs=imgs, data_samples=samples)


def test_cmae_views_from_one_image_per_sample():
    pre = _preprocessor(CMAE_B)
    data = _batch(6, 256)
    out = pre(copy.deepcopy(data), training=True)
    online, target = out['inputs']
    assert online.shape == target.shape == (6, 3, 224, 224)
    assert online.dtype == target.dtype == torch.float32
    # the online view is the top-left crop of the (possibly flipped) image, RGB,
    # normalised: every row of it is a row of the image or of its mirror
    rgb = data['inputs'][:, [2, 1, 0]].float()
    mean, std = pre.mean, pre.std
    plain = ((rgb - mean) / std)[..., :224, :224]
    mirrored = ((rgb.flip(-1) - mean) / std)[..., :224, :224]
    for i in range(6):
        assert (torch.allclose(online[i], plain[i], atol=1e-5)
                or torch.allclose(online[i], mirrored[i], atol=1e-5))
    assert not torch.allclose(online, target)  # the target view is shifted/jittered
    # outside training: one normalised image, no views
    single = pre(copy.deepcopy(data), training=False)['inputs']
    torch.testing.assert_close(single, (rgb - mean) / std)


def test_views_made_by_the_pipeline_are_only_normalised():
    """The all-CPU pipelines pack [online, target]: the result equals MMPretrain's
    SelfSupDataPreprocessor's."""
    pre = _preprocessor(CMAE_B)
    ref = SelfSupDataPreprocessor(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
    views = [_batch(4, 224)['inputs'], _batch(5, 224)['inputs'][:4]]
    data = dict(inputs=views, data_samples=[DataSample() for _ in range(4)])
    got = pre(copy.deepcopy(data), training=True)['inputs']
    expect = ref(copy.deepcopy(data), training=True)['inputs']
    for a, b in zip(got, expect):
        torch.testing.assert_close(a, b)


def test_conmim_masks_move_as_one_tensor():
    pre = _preprocessor(CONMIM_B)
    data = _batch(5, 224, masks=True)
    expect = torch.stack([s.mask for s in data['data_samples']])
    out = pre(data, training=True)
    masks = [s.mask for s in out['data_samples']]
    torch.testing.assert_close(torch.stack(masks), expect)
    # views of one stacked tensor (one copy to the device, not one per sample)
    assert len({m.untyped_storage().data_ptr() for m in masks}) == 1
    online, target = out['inputs']
    assert online.shape == target.shape == (5, 3, 224, 224)


def test_draws_follow_seed_rank_and_iteration():
    """Draw d of a run uses derive_seed(seed, rank, d), d = the Runner's iteration:
    the same iteration gives the same views (a resume continues them), another
    iteration others."""
    pre = _preprocessor(CMAE_B)
    data = _batch(4, 256)
    hub = MessageHub.get_instance('device_augmentation_draws')
    hub.update_info('iter', 7)
    first = pre(copy.deepcopy(data), training=True)['inputs'][1]
    again = pre(copy.deepcopy(data), training=True)['inputs'][1]
    torch.testing.assert_close(first, again)
    hub.update_info('iter', 8)
    other = pre(copy.deepcopy(data), training=True)['inputs'][1]
    assert not torch.allclose(first, other)


@pytest.mark.parametrize('config', [CMAE_B, CONMIM_B])
def test_both_placements_use_the_same_recipe_numbers(config):
    """Each device augmentation has the parameters and probability of the CPU
    transform it replaces (RandomApply's prob for the jitter), and the pipelines'
    shared crop is the same."""
    cfg = Config.fromfile(config)
    device = cfg.model.data_preprocessor.view_augments[1]
    cpu = list(cfg.cpu_train_pipeline)
    nested = []  # the target view's CPU transforms
    for t in cpu:
        if t['type'] == 'PixelShift':
            nested = t['target_transforms']
        elif t['type'] == 'MultiView':
            nested = t['transforms'][1]
    targets = {}
    for n in nested:  # RandomApply unwrapped, its prob kept
        if n['type'] == 'RandomApply':
            n = dict(n['transforms'][0], prob=n['prob'])
        targets[n['type']] = n
    assert {CPU_NAMES[d['type']]
            for d in device if d['type'] in CPU_NAMES} == set(targets)
    for d in device:
        if d['type'] not in CPU_NAMES:
            continue
        c = targets[CPU_NAMES[d['type']]]
        assert d['prob'] == c['prob'], d['type']
        if d['type'] == 'BatchColorJitter':
            for k in ('brightness', 'contrast', 'saturation', 'hue'):
                assert d[k] == c[k], k
        elif d['type'] == 'BatchRandomGrayscale':  # RGB order vs the CPU's BGR
            assert tuple(d['channel_weights']) == tuple(c['channel_weights'])[::-1]
        elif d['type'] == 'BatchGaussianBlur':
            assert tuple(d['sigma_range']) == tuple(c['magnitude_range'])
            assert c['magnitude_std'] == 'inf'  # uniform, as the device's draw
        elif d['type'] == 'BatchSolarize':
            assert d['thr'] == c['thr']
    crop = [t for t in cfg.train_pipeline if 'RandomResizedCrop' in t['type']]
    assert crop and crop[0] in cpu
    flips = [t for t in cpu if t['type'] == 'RandomFlip']
    shared = cfg.model.data_preprocessor.shared_augments
    assert [f['prob'] for f in flips] == [s['prob'] for s in shared] == [0.5]


def test_augment_on_selects_the_pipeline():
    cfg = Config.fromfile(BLOCKMASK)
    select_train_pipeline(cfg, 'cpu')
    types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert 'MultiView' in types and 'ConMIMBlockMaskGenerator' in types
    select_train_pipeline(cfg, 'device')
    types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert 'MultiView' not in types and 'ConMIMBlockMaskGenerator' in types
    mae = Config.fromfile(
        'configs/pretrain/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py')
    with pytest.raises(ValueError, match='cpu_train_pipeline'):
        select_train_pipeline(mae, 'cpu')


def _train_losses(repo_root, run_env, work_dir, photo_folder, where):
    cmd = [
        'tools/train.py', CMAE_DEMO, '--work-dir',
        str(work_dir), '--augment-on', where, '--cfg-options',
        f'train_dataloader.dataset.data_root={photo_folder}',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'train_cfg.max_iters=40', 'default_hooks.logger.interval=1',
        'log_processor.window_size=1', 'default_hooks.checkpoint.interval=40',
        'randomness.seed=0'
    ]
    proc = run_subprocess(cmd, run_env, repo_root)[0]
    files = [
        osp.join(dp, f) for dp, _, fs in os.walk(work_dir) for f in fs
        if f == 'scalars.json'
    ]
    with open(files[0]) as f:
        logs = [json.loads(line) for line in f if '"loss"' in line]
    assert [r['iter'] for r in logs] == list(range(1, 41))
    return proc.stdout + proc.stderr, logs


@pytest.mark.e2e
def test_training_either_way_reaches_the_same_losses(tmp_path, repo_root, run_env,
                                                     photo_folder):
    """40 iterations of the tiny CMAE with the augmentation in the workers and on the
    device: both losses fall, and their means over the last 10 iterations agree
    within 15 %. The two placements draw different random numbers, so the curves
    differ by sampling noise; measured on 2 CPU cores: loss_rc 0.709 vs 0.685
    (3.5 %), loss_ct 0.2054 vs 0.2063 (0.4 %)."""
    out_dev, dev = _train_losses(repo_root, run_env, tmp_path / 'dev', photo_folder,
                                 'device')
    assert 'views made on cpu from one image per sample' in out_dev
    out_cpu, cpu = _train_losses(repo_root, run_env, tmp_path / 'cpu', photo_folder,
                                 'cpu')
    assert 'views made on' not in out_cpu
    for key in ('loss_rc', 'loss_ct'):
        first = [sum(r[key] for r in logs[:5]) / 5 for logs in (dev, cpu)]
        last = [sum(r[key] for r in logs[-10:]) / 10 for logs in (dev, cpu)]
        assert last[0] < 0.9 * first[0] and last[1] < 0.9 * first[1], (key, first, last)
        assert abs(last[0] - last[1]) < 0.15 * last[1], (key, last)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('config', [CMAE_B, CONMIM_B])
def test_cuda_views_without_synchronisation(config):
    """On a GPU the whole preprocessor (pinned batch, non-blocking copies, stacked
    masks, parameter draws, views) runs with synchronising CUDA calls made errors."""
    pre = _preprocessor(config).cuda()
    data = _batch(8, 256 if config == CMAE_B else 224, masks=config == CONMIM_B)
    data['inputs'] = data['inputs'].pin_memory()
    pre(copy.deepcopy(data), training=True)  # first call: logs, builds generators
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        out = pre(data, training=True)
    finally:
        torch.cuda.set_sync_debug_mode('default')
    assert all(v.is_cuda and v.shape[-2:] == (224, 224) for v in out['inputs'])
