"""Classification transfer on a tiny ImageNet in the real on-disk layout: every
config builds its model; the CMAE fine-tuning and the linear probe run through
tools/train.py and tools/test.py to a metric, starting from the checkpoint's encoder."""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import cmae_mm  # noqa: F401
from cmae_mm.engine.checkpoint import load_checkpoint_weights_only
from cmae_mm.testing import build_tiny_imagenet

TINY = dict(embed_dims=192, num_layers=4, num_heads=3, feedforward_channels=768)
FINETUNE = 'configs/cls/cmae_vit-base-p16_8xb128-coslr-100e_in1k.py'
LINEAR = 'configs/cls/cmae_vit-base-p16_8xb2048-linear-coslr-90e_in1k.py'
EXPECTED_ARCH = {'base': (768, 12), 'small': (384, 12), 'large': (1024, 24)}


@pytest.fixture(scope='module')
def cmae_ckpt(cmae_pretrain_ckpt):
    return cmae_pretrain_ckpt, load_checkpoint_weights_only(cmae_pretrain_ckpt)


@pytest.fixture(scope='module')
def imagenet_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('imagenet'))
    info = build_tiny_imagenet(
        root, num_classes=3, train_per_class=4, val_per_class=2, size=80)
    assert (info['train'], info['val']) == (12, 6)
    return root


def tiny_options(ckpt, root, linear=False):
    """Shrink a config to a tiny ViT on 64-px images, 1 epoch of 3 iterations."""
    opts = {f'model.backbone.arch.{k}': v for k, v in TINY.items()}
    opts.update({
        'model.backbone.img_size': 64,
        'model.head.in_channels': 192,
        'model.backbone.init_cfg.checkpoint': ckpt,
        'train_cfg.max_epochs': 1,
        'default_hooks.logger.interval': 1,
        'train_dataloader.batch_size': 4,
        'train_dataloader.dataset.pipeline.1.scale': 64,  # RandomResizedCrop
    })
    if linear:
        opts.update({
            'model.backbone.frozen_stages': TINY['num_layers'],
            'model.neck.input_features': 192
        })
    for split in ('train', 'val', 'test'):
        opts.update({
            f'{split}_dataloader.dataset.data_root': root,
            f'{split}_dataloader.num_workers': 0,
            f'{split}_dataloader.persistent_workers': False
        })
    for split in ('val', 'test'):
        opts.update({
            f'{split}_dataloader.batch_size': 6,
            f'{split}_dataloader.dataset.pipeline.1.scale': 73,  # ResizeEdge
            f'{split}_dataloader.dataset.pipeline.2.crop_size': 64
        })
    return opts


def as_cli(opts):
    return [f'{k}={v}' for k, v in opts.items()]


@pytest.mark.parametrize(
    'config',
    sorted(
        glob.glob(
            osp.join(
                osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs/cls/*.py'))))
def test_every_cls_config_builds(config):
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(config)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports['imports'] == ['cmae_mm']
    init = cfg.model.backbone.init_cfg
    assert init.type == 'PretrainedEncoder' and init.checkpoint is None
    assert init.encoder == ('target' if 'conmim' in config else 'online')
    model = MODELS.build(cfg.model)
    size = next(k for k in EXPECTED_ARCH if f'vit-{k}' in osp.basename(config))
    dims, layers = EXPECTED_ARCH[size]
    assert model.backbone.embed_dims == dims and len(model.backbone.layers) == layers
    assert model.head.num_classes == 1000


def test_recipe_numbers():
    """Learning rates of the released fine-tuning recipes (docs/recipes.md), for the
    global batch of 1024 / 16384."""
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    lr = {
        name: Config.fromfile(osp.join(root, 'configs/cls', name)).optim_wrapper
        for name in ('cmae_vit-base-p16_8xb128-coslr-100e_in1k.py',
                     'cmae_vit-base-p16_8xb128-lr2.5e-4-coslr-100e_in1k.py',
                     'conmim_vit-base-p16_8xb128-coslr-100e_in1k.py',
                     'cmae_vit-base-p16_8xb2048-linear-coslr-90e_in1k.py')
    }
    ft300, ft1600, conmim, linear = lr.values()
    assert ft300.optimizer.lr == pytest.approx(5e-4 * 1024 / 256)
    assert ft1600.optimizer.lr == pytest.approx(2.5e-4 * 1024 / 256)
    assert conmim.optimizer.lr == pytest.approx(4e-3)
    assert linear.optimizer.type == 'LARS' and linear.optimizer.lr == 6.4
    for ow in (ft300, ft1600, conmim):
        assert ow.constructor == 'LearningRateDecayOptimWrapperConstructor'
        assert ow.paramwise_cfg.layer_decay_rate == 0.65


@pytest.mark.e2e
def test_finetune_starts_from_checkpoint(repo_root, cmae_ckpt, imagenet_root):
    """The exact config + options the CLI run below uses: after init_weights the
    encoder equals the checkpoint's online encoder (pos_embed resized 14 -> 4)."""
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    path, sd = cmae_ckpt
    cfg = Config.fromfile(osp.join(repo_root, FINETUNE))
    cfg.merge_from_dict(tiny_options(path, imagenet_root))
    model = MODELS.build(cfg.model)
    model.init_weights()
    compared = 0
    for key, value in model.backbone.state_dict().items():
        if key.startswith('ln2.') or key == 'pos_embed':
            continue
        torch.testing.assert_close(value, sd['backbone.' + key], rtol=0, atol=0)
        compared += 1
    assert compared == len([k for k in sd if k.startswith('backbone.')
                            ]) - 3  # ln1 x2, pos


@pytest.mark.e2e
@pytest.mark.parametrize(
    'config, linear', [(FINETUNE, False), (LINEAR, True)],
    ids=['finetune', 'linear_probe'])
def test_train_and_test_cli(run_tool, cmae_ckpt, imagenet_root, tmp_path, config,
                            linear):
    path, _ = cmae_ckpt
    opts = tiny_options(path, imagenet_root, linear=linear)
    work = str(tmp_path / 'train')
    proc, t_train = run_tool(
        ['tools/train.py', config, '--work-dir', work, '--cfg-options'] + as_cli(opts))
    log = proc.stdout + proc.stderr
    # the load report of PretrainedEncoder, from inside the real training run
    assert 'TransferViT <- online encoder of' in log and 'loaded' in log
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    trained = load_checkpoint_weights_only(ckpt)
    pretrained = load_checkpoint_weights_only(path)
    key = 'backbone.layers.0.attn.qkv.weight'
    if linear:  # frozen encoder: unchanged by training
        torch.testing.assert_close(trained[key], pretrained[key], rtol=0, atol=0)
    else:  # fine-tuned: moved away from the checkpoint, but not far
        assert not torch.equal(trained[key], pretrained[key])
    test_work = str(tmp_path / 'test')
    _, t_test = run_tool(
        ['tools/test.py', config, ckpt, '--work-dir', test_work, '--cfg-options'] +
        as_cli(opts))
    metrics = json.load(open(osp.join(test_work, 'metrics.json')))
    top1 = metrics['accuracy/top1']
    assert 0.0 <= top1 <= 100.0
    print(f'\n[{"linear probe" if linear else "fine-tune"}] accuracy/top1={top1:.2f} '
          f'train {t_train:.1f}s test {t_test:.1f}s')


@pytest.mark.parametrize(
    'config',
    sorted(
        glob.glob(
            osp.join(
                osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs/cls/*.py'))))
def test_head_init_is_truncated_at_two_std(config):
    """With MMEngine's default bounds (+-2 absolute) a tiny-std TruncNormal sometimes
    puts a weight at exactly +-2 (erfinv(+-1) clamped); the configs bound it at 2
    std."""
    cfg = Config.fromfile(config)
    for init in cfg.model.head.get('init_cfg') or []:
        if init['type'] == 'TruncNormal':
            assert (init['a'], init['b']) == (-2 * init['std'], 2 * init['std'])
            from mmengine.model.weight_init import trunc_normal_
            torch.manual_seed(0)
            w = torch.empty(400, 1000)
            trunc_normal_(w, std=init['std'], a=init['a'], b=init['b'])
            assert w.abs().max() <= 2 * init['std']
