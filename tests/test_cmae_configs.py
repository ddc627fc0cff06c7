"""Every CMAE pretraining config builds its model; recipe numbers; data loaders."""
import glob
import os
import os.path as osp

import pytest
import torch

CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'pretrain')
CMAE_CONFIGS = sorted(
    osp.basename(p) for p in glob.glob(osp.join(CONFIG_DIR, 'cmae_*.py')))

# config -> (encoder width, layers, visible patches, mask unit)
EXPECTED = {
    'cmae_vit-b.py': (768, 12, 68, 2),
    'cmae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py': (768, 12, 68, 2),
    'cmae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py': (768, 12, 68, 2),
    'cmae_vit-base-p16_8xb512-amp-coslr-800e_in1k.py': (768, 12, 68, 2),
    'cmae_vit-base-p16-mask75_8xb512-amp-coslr-1600e_in1k.py': (768, 12, 49, 1),
    'cmae_vit-small-p16_8xb512-amp-coslr-1600e_in1k.py': (384, 12, 68, 2),
    'cmae_vit-large-p16_8xb512-amp-coslr-1600e_in1k.py': (1024, 24, 68, 2),
    'cmae_vit-tiny-p16_1xb8-800iter_demo.py': (192, 4, 68, 2),
}


@pytest.fixture(scope='module')
def registry():
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import cmae_mm  # noqa: F401
    init_default_scope('mmpretrain')
    return MODELS


def _cfg(name):
    from mmengine.config import Config
    return Config.fromfile(osp.join(CONFIG_DIR, name))


def test_all_cmae_configs_listed():
    assert set(CMAE_CONFIGS) == set(EXPECTED), CMAE_CONFIGS


@pytest.mark.parametrize('name', CMAE_CONFIGS)
def test_config_builds_its_model(registry, name):
    from cmae_mm.models.algorithms import CMAE
    cfg = _cfg(name)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports == dict(imports=['cmae_mm'], allow_failed_imports=False)
    width, depth, visible, unit = EXPECTED[name]
    torch.manual_seed(0)
    # ViT-L (2 x 300M parameters) is built on the meta device: structure only
    with torch.device('meta' if 'vit-l' in name else 'cpu'):
        model = registry.build(cfg.model)
    assert isinstance(model, CMAE)
    bb = model.backbone
    assert (bb.embed_dims, bb.num_layers) == (width, depth)
    assert (bb.num_visible, bb.mask_unit_size) == (visible, unit)
    assert len(model.feature_decoder.decoder_blocks) == (1 if 'tiny' in name else 2)
    assert len(model.neck.decoder_blocks) == (2 if 'tiny' in name else 8)
    assert model.feature_decoder.decoder_pred.out_features == width
    assert model.neck.decoder_pred.out_features == 16 * 16 * 3
    assert model.projector.fc0.in_features == width
    assert model.head.norm_pix is True
    assert model.contrastive_head.temperature == 0.07
    assert model.contrastive_head.loss_module.loss_weight == pytest.approx(0.14)
    m = 0.99 if 'tiny' in name else 0.996
    assert model.target_encoder.momentum == pytest.approx(1 - m)
    assert model.target_encoder.end_momentum == pytest.approx(1 - m)
    assert list(model.target_encoder.module[0].state_dict()) == \
        list(bb.state_dict())
    del model


@pytest.mark.parametrize(
    'name,epochs,cos_tmax',
    [('cmae_vit-b.py', 1600, 1560),
     ('cmae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py', 300, 260),
     ('cmae_vit-base-p16_8xb512-amp-coslr-800e_in1k.py', 800, 760),
     ('cmae_vit-base-p16-mask75_8xb512-amp-coslr-1600e_in1k.py', 1600, 1560),
     ('cmae_vit-small-p16_8xb512-amp-coslr-1600e_in1k.py', 1600, 1560),
     ('cmae_vit-large-p16_8xb512-amp-coslr-1600e_in1k.py', 1600, 1560)])
def test_recipe_numbers(name, epochs, cos_tmax):
    cfg = _cfg(name)
    assert cfg.train_dataloader.batch_size == 512  # x 8 GPUs = 4096
    # opt-in (--auto-scale-lr), as OpenMMLab's configs
    assert cfg.auto_scale_lr == dict(base_batch_size=4096, enable=False)
    opt = cfg.optim_wrapper.optimizer
    assert opt.type == 'AdamW' and opt.lr == pytest.approx(2.4e-3)
    assert opt.betas == (0.9, 0.95) and opt.weight_decay == 0.05
    warm, cos = cfg.param_scheduler
    assert (warm.type, warm.start_factor, warm.end) == ('LinearLR', 1e-4, 40)
    assert (cos.type, cos.begin, cos.end, cos.T_max) == \
        ('CosineAnnealingLR', 40, epochs, cos_tmax)
    assert cfg.train_cfg.max_epochs == epochs
    assert cfg.randomness == dict(seed=60, diff_rank_seed=True)  # released seed
    shift = [t for t in cfg.cpu_train_pipeline if t.type == 'PixelShift'][0]
    assert (shift.view_size, shift.max_shift) == (224, 31)
    online, target = cfg.model.data_preprocessor.view_augments  # on the device
    assert (online[0].size, online[0].max_shift) == (224, 0)
    assert (target[0].size, target[0].max_shift) == (224, 31)
    crop = cfg.train_dataloader.dataset.pipeline[1]
    assert (crop.type, crop.scale) == ('FastRandomResizedCrop', 256)


def test_mae_reference_builds(registry):
    from mmpretrain.models import MAE
    cfg = _cfg('mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py')
    model = registry.build(cfg.model)
    assert type(model) is MAE
    assert model.backbone.mask_ratio == 0.75 and model.backbone.embed_dims == 768
    assert len(model.neck.decoder_blocks) == 8


def _imagenet_list_root(tmp_path, photo_folder):
    """ImageNet's list layout: data_root/train/<class>/<img>,
    data_root/meta/train.txt."""
    import shutil
    root = tmp_path / 'imagenet'
    lines = []
    for i, f in enumerate(sorted(os.listdir(photo_folder))):
        cls = f'n{i % 2:08d}'
        os.makedirs(root / 'train' / cls, exist_ok=True)
        shutil.copy(osp.join(photo_folder, f), root / 'train' / cls / f)
        lines.append(f'{cls}/{f} {i % 2}')
    os.makedirs(root / 'meta')
    (root / 'meta' / 'train.txt').write_text('\n'.join(lines) + '\n')
    return str(root)


@pytest.mark.parametrize('layout,where', [('imagenet_list', 'cpu'),
                                          ('plain_folder', 'cpu'),
                                          ('plain_folder', 'device')])
def test_datasets_load_real_images(registry, tmp_path, photo_folder, layout, where):
    """ImageNet (ann_file list) and any plain folder (CustomDataset, no labels); with
    the augmentation on the device the workers deliver one 256 x 256 crop."""
    import numpy as np
    from mmpretrain.registry import DATASETS

    from cmae_mm.models.data_preprocessors import select_train_pipeline
    cfg = _cfg('cmae_vit-b.py')
    select_train_pipeline(cfg, where)
    ds_cfg = cfg.train_dataloader.dataset
    if layout == 'imagenet_list':
        assert ds_cfg.type == 'ImageNet' and ds_cfg.split == 'train'
        ds_cfg.data_root = _imagenet_list_root(tmp_path, photo_folder)
    else:
        ds_cfg.update(type='CustomDataset', data_root=photo_folder, with_label=False)
        ds_cfg.pop('split')
    ds = DATASETS.build(ds_cfg)
    assert len(ds) == 9
    np.random.seed(0)
    item = ds[0]
    assert osp.isfile(item['data_samples'].img_path)
    if where == 'device':
        assert item['inputs'].shape == (3, 256, 256)
        assert item['inputs'].dtype == torch.uint8
        return
    online, target = item['inputs']
    assert online.shape == target.shape == (3, 224, 224)
    assert len(item['data_samples'].pixel_shift) == 2
