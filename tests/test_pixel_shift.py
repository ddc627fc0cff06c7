"""CMAE's pixel-shifting view generator (PixelShift) on real photographs."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch


@pytest.fixture(scope='module')
def registered():
    from mmengine.registry import init_default_scope

    import cmae_mm  # noqa: F401
    init_default_scope('mmpretrain')


def _source_256(photo: np.ndarray) -> np.ndarray:
    """A 256 x 256 BGR image from a photograph (what the shared crop produces)."""
    img = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[..., ::-1])


def test_target_is_source_shifted_by_recorded_offset(registered, photos):
    from cmae_mm.datasets.transforms import PixelShift
    t = PixelShift(view_size=224, max_shift=31, target_transforms=[])
    np.random.seed(0)
    for name, photo in photos.items():
        src = _source_256(photo)
        out = t(dict(img=src.copy()))
        online, target = out['img']
        dy, dx = out['pixel_shift']
        assert 0 <= dy <= 31 and 0 <= dx <= 31
        assert online.shape == target.shape == (224, 224, 3)
        assert out['img_shape'] == (224, 224)
        # online view: the crop at (0, 0)
        np.testing.assert_array_equal(online, src[:224, :224])
        # target view (before colour augmentation): the crop at (dy, dx) ...
        np.testing.assert_array_equal(target, src[dy:dy + 224, dx:dx + 224])
        # ... and no other offset reproduces it on these real pixels
        matches = [(y, x) for y in range(32) for x in range(32)
                   if np.array_equal(src[y:y + 224, x:x + 224], target)]
        assert matches == [(dy, dx)], name


def test_both_shift_bounds_reachable(registered, photos):
    from cmae_mm.datasets.transforms import PixelShift
    t = PixelShift(view_size=224, max_shift=31, target_transforms=[])
    src = _source_256(photos['astronaut'])
    np.random.seed(1)
    shifts = np.array([t(dict(img=src))['pixel_shift'] for _ in range(3000)])
    for axis in (0, 1):
        values = set(shifts[:, axis].tolist())
        assert values == set(range(32)), f'axis {axis}: {sorted(values)}'


def test_cannot_fit_is_a_clear_error(registered, photos):
    from cmae_mm.datasets.transforms import PixelShift
    t = PixelShift(view_size=224, max_shift=31, target_transforms=[])
    small = _source_256(photos['coffee'])[:250, :]
    with pytest.raises(ValueError, match='cannot fit.*255x255.*250x256'):
        t(dict(img=small))
    # 255 = 224 + 31 is the smallest size that fits
    t(dict(img=_source_256(photos['coffee'])[:255, :255]))
    with pytest.raises(ValueError, match='max_shift'):
        PixelShift(max_shift=-1)


def test_grayscale_of_target_uses_bgr_weights(registered, photos):
    """With grayscale forced on, target = gray(shifted source), weights in BGR order."""
    from cmae_mm.datasets.transforms import PixelShift
    t = PixelShift(
        view_size=224,
        max_shift=31,
        target_transforms=[
            dict(
                type='RandomGrayscale',
                prob=1.0,
                keep_channels=True,
                channel_weights=(0.114, 0.587, 0.2989))
        ])
    src = _source_256(photos['chelsea'])  # BGR
    np.random.seed(2)
    out = t(dict(img=src.copy()))
    # RGB-order weights would give a different image on this photograph
    crop0 = src[out['pixel_shift'][0]:, out['pixel_shift'][1]:][:224, :224]
    rgb_order = (0.2989 * crop0[..., 0] + 0.587 * crop0[..., 1] + 0.114 * crop0[..., 2])
    assert np.abs(out['img'][1][..., 0] - rgb_order).mean() > 2
    dy, dx = out['pixel_shift']
    crop = src[dy:dy + 224, dx:dx + 224].astype(np.float64)
    w = np.array([0.114, 0.587, 0.2989]) / (0.114 + 0.587 + 0.2989)  # B, G, R
    gray = w[0] * crop[..., 0] + w[1] * crop[..., 1] + w[2] * crop[..., 2]
    target = out['img'][1]
    assert target.shape == (224, 224, 3)
    for c in range(3):
        assert np.abs(target[..., c].astype(np.float64) - gray).max() <= 1.0
    # the online view is untouched
    np.testing.assert_array_equal(out['img'][0], src[:224, :224])


def test_recipe_pipeline_on_photo_folder(registered, photo_folder, repo_root):
    """The config's full pipeline: two 224 views and the recorded shift."""
    from mmengine.config import Config
    from mmpretrain.registry import DATASETS
    cfg = Config.fromfile(
        osp.join(repo_root, 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py'))
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.data_root = photo_folder
    ds = DATASETS.build(ds_cfg)
    assert len(ds) == 9
    np.random.seed(3)
    seen = []
    for i in range(len(ds)):
        item = ds[i]
        online, target = item['inputs']
        assert online.shape == target.shape == (3, 224, 224)
        assert online.dtype == torch.uint8
        dy, dx = item['data_samples'].pixel_shift
        assert 0 <= dy <= 31 and 0 <= dx <= 31
        seen.append((dy, dx))
    assert len(set(seen)) > 1
