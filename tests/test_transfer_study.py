"""The transfer study (docs/transfer_study.md): its configs build the scaled models
with the recipes' numbers, and its runner plans, skips and tabulates runs."""
import importlib.util
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='module')
def study():
    spec = importlib.util.spec_from_file_location(
        'transfer_study', osp.join(REPO, 'tools/study/transfer_study.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plan_covers_every_cell_with_the_right_config(study):
    runs = study.plan(list(study.PARTS), list(study.ENCODERS))
    # fine-tuning: 2 seeds x 4 encoders; linear, det, seg: 1 seed x 4
    assert len(runs) == 8 + 4 + 4 + 4
    assert len({r.name for r in runs}) == len(runs)
    for r in runs:
        assert osp.isfile(osp.join(REPO, r.config)), r.config
        assert osp.basename(
            r.config).startswith('conmim' if r.encoder == 'conmim' else 'cmae')
    det = {r.encoder: r.config for r in runs if r.part == 'det'}
    assert 'vitdet' in det['cmae'] and 'vitdet' not in det['conmim']


def test_run_options(study):
    ft = study.Run('finetune', 'scratch', 1, 'x.py')
    opts = study.run_options(ft, None, '/d/fm', '/d/sc')
    assert 'randomness.seed=1' in opts and 'model.backbone.init_cfg=None' in opts
    assert 'train_dataloader.dataset.data_root=/d/fm' in opts
    det = study.Run('det', 'cmae', 0, 'x.py')
    opts = study.run_options(det, '/c/epoch_5.pth', '/d/fm', '/d/sc')
    assert 'model.backbone.init_cfg.checkpoint=/c/epoch_5.pth' in opts
    assert 'test_evaluator.ann_file=/d/sc/annotations/instances_validation.json' in opts


def test_finished_runs_are_kept_and_tabulated(study, tmp_path):
    """A run with a result.json is not run again; the table gives the mean and both
    seeds' values, the figure is written."""
    runs = study.plan(['finetune', 'seg'], ['scratch', 'cmae'])
    for i, r in enumerate(runs):
        d = tmp_path / 'runs' / r.name
        d.mkdir(parents=True)
        metric = 'accuracy/top1' if r.part == 'finetune' else 'mIoU'
        json.dump(
            dict(
                r._asdict(),
                metrics={metric: 80.0 + i},
                train_minutes=1.0,
                test_minutes=0.5), open(d / 'result.json', 'w'))
    # no tools/train.py is started for them (it would fail: no data)
    results = [
        study.train_and_test(r, str(tmp_path), {}, '/nonexistent', '/nonexistent')
        for r in runs
    ]
    study.write_results(str(tmp_path), results, ['scratch', 'cmae'])
    table = json.load(open(tmp_path / 'results.json'))['table']
    assert table['scratch']['fine-tune top-1'] == dict(mean=80.5, values=[80.0, 81.0])
    assert table['cmae']['mIoU'] == dict(mean=85.0, values=[85.0])
    md = open(tmp_path / 'results.md').read()
    assert '| scratch | 80.50 (80.00, 81.00) | - | - | - | 84.00 |' in md
    assert osp.getsize(tmp_path / 'transfer.png') > 1000


def _cfg(name: str, scope: str) -> Config:
    init_default_scope(scope)
    return Config.fromfile(osp.join(REPO, 'configs', name))


@pytest.mark.parametrize('arch', ['cmae', 'conmim'])
def test_cls_configs_build_the_study_vit(arch):
    from mmpretrain.registry import MODELS
    ft = _cfg(f'cls/{arch}_vit-tiny-p4_1xb128-coslr-5e_fashion-mnist-32px.py',
              'mmpretrain')
    lin = _cfg(f'cls/{arch}_vit-tiny-p4_1xb128-linear-coslr-10e_fashion-mnist-32px.py',
               'mmpretrain')
    # the recipes' layer decay and lr at their global batch (not scaled to 128)
    assert ft.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.65
    assert ft.optim_wrapper.optimizer.lr == pytest.approx(5e-4 * 1024 / 256 if arch ==
                                                          'cmae' else 4e-3)
    assert lin.optim_wrapper.optimizer.type == 'LARS'
    assert lin.optim_wrapper.optimizer.lr == 6.4
    assert ft.data_preprocessor.batch_augments is not None  # Mixup / CutMix kept
    assert lin.data_preprocessor.batch_augments is None
    for cfg in (ft, lin):
        assert cfg.train_dataloader.dataset.type == 'FashionMNIST'
        assert cfg.train_dataloader.dataset.indices == 5000
        assert cfg.test_dataloader.dataset.test_mode is True
        assert 'indices' not in cfg.test_dataloader.dataset  # all 10,000
        assert 'split' not in cfg.test_dataloader.dataset  # not the recipe's 'val'
        assert cfg.model.backbone.init_cfg.encoder == ('target' if arch == 'conmim' else
                                                       'online')
        model = MODELS.build(cfg.model)
        assert model.backbone.patch_resolution == (8, 8)
        assert len(model.backbone.layers) == 4
        model.eval()
        with torch.no_grad():
            logits = model(torch.rand(2, 3, 32, 32), mode='tensor')
        assert logits.shape == (2, 10)
    frozen = MODELS.build(lin.model)
    assert not any(p.requires_grad for p in frozen.backbone.parameters())


def test_cls_configs_read_both_fashion_mnist_splits(tmp_path):
    """The training loader reads the training IDX files (its first 5,000 images), the
    test loader the t10k files, through the configs' own pipelines (a FashionMNIST
    dataset given the recipe's ImageNet ``split='val'`` would refuse)."""
    from mmpretrain.registry import DATASETS

    from cmae_mm.testing import build_tiny_fashion_mnist
    build_tiny_fashion_mnist(str(tmp_path), num_train=36, num_test=18)
    cfg = _cfg('cls/cmae_vit-tiny-p4_1xb128-coslr-5e_fashion-mnist-32px.py',
               'mmpretrain')
    sizes = {}
    for loader in ('train_dataloader', 'test_dataloader'):
        ds_cfg = cfg[loader].dataset
        ds_cfg.data_root = str(tmp_path)
        ds = DATASETS.build(ds_cfg)
        sample = ds[0]
        assert sample['inputs'].shape == (3, 32, 32)
        sizes[loader] = len(ds)
    assert sizes == dict(train_dataloader=36, test_dataloader=18)


@pytest.mark.parametrize('arch', ['cmae', 'conmim'])
def test_det_configs_build_the_scaled_mask_rcnn(arch):
    """The pyramid's strides match the anchors' and RoI extractors' (1 to 16 for a
    patch-4 map) and Mask R-CNN computes its losses on a 96 x 96 scene."""
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    name = (
        'cmae_vit-tiny-p4_vitdet-mask-rcnn' if arch == 'cmae' else
        'conmim_vit-tiny-p4_mask-rcnn') + '_1xb8-lsj-300iter_fashion-mnist-scenes.py'
    cfg = _cfg('det/' + name, 'mmdet')
    assert cfg.train_cfg.max_iters == 300 and cfg.optim_wrapper.accumulative_counts == 1
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.7
    assert cfg.train_dataloader.dataset.metainfo.classes[0] == 'T-shirt/top'
    model = MODELS.build(cfg.model)
    feats = model.extract_feat(torch.rand(1, 3, 96, 96))
    assert [f.shape[-1] for f in feats] == [96, 48, 24, 12, 6]
    assert list(model.rpn_head.prior_generator.strides) == [(s, s)
                                                            for s in (1, 2, 4, 8, 16)]
    assert model.roi_head.bbox_head.num_classes == 10
    if arch == 'cmae':  # ViTDet: windows of 8 but in the global blocks 1 and 3
        assert [b.window_size for b in model.backbone.layers] == [8, 0, 8, 0]
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(96, 96), pad_shape=(96, 96), batch_input_shape=(96, 96)))
    mask = torch.zeros(1, 96, 96, dtype=torch.uint8)
    mask[0, 20:60, 30:70] = 1
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[30., 20., 70., 60.]]),
        labels=torch.tensor([3]),
        masks=BitmapMasks(mask.numpy(), 96, 96))
    losses = model.loss(torch.rand(1, 3, 96, 96), [sample])
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(losses)
    assert all(torch.isfinite(torch.as_tensor(v).sum()) for v in losses.values())


@pytest.mark.parametrize('arch', ['cmae', 'conmim'])
def test_seg_configs_build_the_scaled_upernet(arch):
    from mmseg.registry import MODELS
    cfg = _cfg(
        f'seg/{arch}_vit-tiny-p4_upernet_1xb8-300iter_fashion-mnist-scenes-96x96.py',
        'mmseg')
    assert cfg.train_cfg.max_iters == 300
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.65
    assert cfg.train_dataloader.dataset.reduce_zero_label is True
    model = MODELS.build(cfg.model)
    feats = model.extract_feat(torch.rand(1, 3, 96, 96))
    assert [tuple(f.shape[-2:]) for f in feats] == [(48, 48), (24, 24), (12, 12),
                                                    (6, 6)]
    assert model.decode_head.num_classes == 10


def test_det_and_seg_configs_read_the_scenes(tmp_path):
    """The det and seg configs' loaders read what tools/study/fashion_mnist_scenes.py
    writes, through their own pipelines (LSJ; ADE20K's resize, crop and label
    reduction): boxes, masks and labels of the 10 classes come out."""
    from mmdet.registry import DATASETS as DET_DATASETS
    from mmseg.registry import DATASETS as SEG_DATASETS

    from cmae_mm.testing import build_tiny_fashion_mnist
    spec = importlib.util.spec_from_file_location(
        'fashion_mnist_scenes', osp.join(REPO, 'tools/study/fashion_mnist_scenes.py'))
    scenes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scenes)
    build_tiny_fashion_mnist(str(tmp_path / 'fm'), num_train=30, num_test=30)
    scenes.prepare_scenes(str(tmp_path / 'fm'), str(tmp_path / 'sc'), 6, 4)
    det = _cfg(
        'det/cmae_vit-tiny-p4_vitdet-mask-rcnn_1xb8-lsj-300iter_'
        'fashion-mnist-scenes.py', 'mmdet')
    for loader, n in (('train_dataloader', 6), ('test_dataloader', 4)):
        ds = DET_DATASETS.build(
            dict(det[loader].dataset, data_root=str(tmp_path / 'sc') + '/'))
        assert len(ds) == n
        sample = ds[0]
        assert sample['inputs'].shape[1:] == (96, 96)
        gt = sample['data_samples'].gt_instances
        assert len(gt) == 0 or gt.masks.masks.shape[1:] == sample['inputs'].shape[1:]
        assert ((gt.labels >= 0) & (gt.labels < 10)).all()
    seg = _cfg(
        'seg/cmae_vit-tiny-p4_upernet_1xb8-300iter_fashion-mnist-scenes-96x96.py',
        'mmseg')
    for loader, n in (('train_dataloader', 6), ('test_dataloader', 4)):
        ds = SEG_DATASETS.build(
            dict(seg[loader].dataset, data_root=str(tmp_path / 'sc')))
        assert len(ds) == n
        sample = ds[0]
        shape = tuple(sample['inputs'].shape[1:])
        # training: resized 0.5-2x, then a crop of at most 96 (the data preprocessor
        # pads to 96); test: the 96 x 96 scene
        assert shape == (96, 96) or (loader == 'train_dataloader' and max(shape) <= 96)
        assert tuple(sample['data_samples'].gt_sem_seg.data.shape[1:]) == shape
        labels = set(sample['data_samples'].gt_sem_seg.data.unique().tolist())
        assert labels <= set(range(10)) | {255} and 255 in labels
