"""``--cfg-options`` that shrink the segmentation and detection transfer recipes to a
tiny run (a 4-layer, 192-d ViT on the tiny ADE20K / COCO of this package), for the
tests and ``tools/analysis/gpu_acceptance.py``. Only overrides: the configs
themselves run unchanged otherwise.
"""
import glob
import json
import os.path as osp
from typing import Dict, List, Sequence, Tuple

#: the tiny ViT of the demo configs (configs/pretrain/*_vit-tiny-*_demo.py)
TINY_VIT = dict(embed_dims=192, num_layers=4, num_heads=3, feedforward_channels=768)
SEG_CONFIG = 'configs/seg/cmae_vit-base-p16_upernet_8xb2-160k_ade20k-512x512.py'
DET_CONFIG = 'configs/det/cmae_vit-base-p16_vitdet-mask-rcnn_8xb4-amp-lsj-100e_coco.py'
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def benchmark_configs(folder: str) -> List[str]:
    """The benchmark recipes of ``configs/<folder>`` (absolute paths, sorted): all
    but the transfer study's configs scaled to Fashion-MNIST (``*fashion-mnist*``,
    docs/transfer_study.md, checked by tests/test_transfer_study.py)."""
    return sorted(
        p for p in glob.glob(osp.join(REPO, 'configs', folder, '*.py'))
        if 'fashion-mnist' not in osp.basename(p))


def seg_tiny_options(ckpt: str, data_root: str, iters: int = 4) -> Dict[str, object]:
    """Overrides (key -> value) making a configs/seg UperNet recipe a tiny run:
    ``ckpt`` a tiny (192-d) pretraining checkpoint, ``data_root`` the
    ``ADEChallengeData2016`` folder of :func:`build_tiny_ade20k`; 64 x 64 crops,
    batch 2, ``iters`` iterations with a validation and a checkpoint at the end."""
    opts = {f'model.backbone.arch.{k}': v for k, v in TINY_VIT.items()}
    opts.update({
        'model.backbone.img_size': [64, 64],
        'model.backbone.out_indices': [0, 1, 2, 3],
        'model.backbone.init_cfg.checkpoint': ckpt,
        'model.data_preprocessor.size': [64, 64],
        'model.neck.embed_dim': 192,
        'model.decode_head.in_channels': [192] * 4,
        'model.decode_head.channels': 32,
        'model.auxiliary_head.in_channels': 192,
        'model.auxiliary_head.channels': 16,
        'model.test_cfg.crop_size': (64, 64),
        'model.test_cfg.stride': (43, 43),
        'train_cfg.max_iters': iters,
        'train_cfg.val_interval': iters,
        'default_hooks.checkpoint.interval': iters,
        'default_hooks.logger.interval': 1,
        'train_dataloader.batch_size': 2,
        'train_dataloader.dataset.pipeline.2.scale': (320, 80),  # RandomResize
        'train_dataloader.dataset.pipeline.3.crop_size': (64, 64),  # RandomCrop
    })
    for split in ('train', 'val', 'test'):
        opts.update({
            f'{split}_dataloader.dataset.data_root': data_root,
            f'{split}_dataloader.num_workers': 0,
            f'{split}_dataloader.persistent_workers': False
        })
    for split in ('val', 'test'):
        opts[f'{split}_dataloader.dataset.pipeline.1.scale'] = (320, 80)  # Resize
    return opts


def logged_losses(work_dir: str) -> List[float]:
    """The training losses of the one run in ``work_dir``, in iteration order, from
    the ``<timestamp>/vis_data/scalars.json`` MMEngine writes (one JSON line per
    logged iteration: one per iteration with ``default_hooks.logger.interval=1``)."""
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    if len(files) != 1:
        raise FileNotFoundError(f'expected one vis_data/scalars.json under {work_dir}, '
                                f'found {files}')
    with open(files[0]) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [
        row['loss'] for row in sorted(rows, key=lambda r: r['step']) if 'loss' in row
    ]


def loss_ends(losses: Sequence[float], k: int = 5) -> Tuple[float, float]:
    """``(mean of the first k, mean of the last k)`` of a loss curve."""
    if len(losses) < 2 * k:
        raise ValueError(f'{len(losses)} losses are too few to compare {k} and {k}')
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


def as_cli(opts: Dict[str, object]) -> List[str]:
    """``{key: value}`` -> ``['key=value', ...]`` for ``--cfg-options`` (MMEngine's
    ``DictAction`` reads ``[a,b]`` as a list and ``(a,b)`` as a tuple)."""
    out = []
    for k, v in opts.items():
        if isinstance(v, (list, tuple)):
            v = ('[{}]' if isinstance(v, list) else '({})').format(','.join(
                map(str, v)))
        out.append(f'{k}={v}')
    return out


def det_tiny_options(ckpt: str,
                     data_root: str,
                     iters: int = 10,
                     size: int = 128) -> List[str]:
    """``--cfg-options`` (``key=value`` strings) making a configs/det ViTDet Mask
    R-CNN recipe a tiny run: ``ckpt`` a tiny (192-d) pretraining checkpoint,
    ``data_root`` the folder of :func:`build_tiny_coco`; ``size`` x ``size`` input
    (1024 in the recipe), batch 2, ``iters`` iterations with a validation and a
    checkpoint at the end."""
    s = f'({size},{size})'
    opts = [f'model.backbone.arch.{k}={v}' for k, v in TINY_VIT.items()]
    opts += [
        # global blocks 1 and 3, window 4 on an 8x8 grid
        'model.backbone.arch.global_attn_indexes=[1,3]',
        f'model.backbone.img_size={size}',
        'model.backbone.window_size=4',
        f'model.backbone.init_cfg.checkpoint={ckpt}',
        'model.neck.backbone_channel=192',
        'model.neck.in_channels=[48,96,192,192]',
        f'model.data_preprocessor.batch_augments.0.size={s}',
        f'model.data_preprocessor.pad_size_divisor={size}',
        # 64 pyramid / head channels (256 in the recipe) and fewer RoIs: the 4conv1fc
        # and mask heads' convolutions are what costs on CPU
        'model.neck.out_channels=64',
        'model.rpn_head.in_channels=64',
        'model.rpn_head.feat_channels=64',
        'model.roi_head.bbox_roi_extractor.out_channels=64',
        'model.roi_head.bbox_head.in_channels=64',
        'model.roi_head.bbox_head.conv_out_channels=64',
        'model.roi_head.bbox_head.fc_out_channels=256',
        'model.roi_head.mask_roi_extractor.out_channels=64',
        'model.roi_head.mask_head.in_channels=64',
        'model.roi_head.mask_head.conv_out_channels=64',
        'model.train_cfg.rcnn.sampler.num=64',
        'model.train_cfg.rpn_proposal.nms_pre=200',
        'model.train_cfg.rpn_proposal.max_per_img=64',
        'model.test_cfg.rpn.nms_pre=200',
        'model.test_cfg.rpn.max_per_img=50',
        # a few iterations leave every class score near 1/81, under the recipe's 0.05
        # threshold; keep all detections so that CocoMetric has results to score
        'model.test_cfg.rcnn.score_thr=0.0',
        # LSJ at SIZE instead of 1024
        f'train_dataloader.dataset.pipeline.3.scale={s}',
        f'train_dataloader.dataset.pipeline.4.crop_size={s}',
        f'train_dataloader.dataset.pipeline.6.size={s}',
        'train_dataloader.batch_size=2',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        f'train_dataloader.dataset.data_root={data_root}',
        f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={iters}',
        'train_cfg.dynamic_intervals=None',
        'default_hooks.logger.interval=1',
        f'default_hooks.checkpoint.interval={iters}',
        # one optimizer step per iteration (the recipe accumulates 2)
        'optim_wrapper.accumulative_counts=1',
    ]
    for split in ('val', 'test'):
        opts += [
            f'{split}_dataloader.dataset.pipeline.1.scale={s}',
            f'{split}_dataloader.num_workers=0',
            f'{split}_dataloader.persistent_workers=False',
            f'{split}_dataloader.dataset.data_root={data_root}',
            f'{split}_evaluator.ann_file='
            f'{data_root}/annotations/instances_val2017.json',
        ]
    return opts
