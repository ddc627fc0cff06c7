"""Every transfer config (configs/cls, seg, det) trains in mixed precision by default
and has the upstream per-GPU batch on 8 GPUs with the recipe's total batch
(docs/transfer.md, Precision and batch)."""
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

from cmae_mm.engine.optimizers import MixedPrecisionOptimWrapper
from cmae_mm.testing.transfer import benchmark_configs

# the benchmark recipes (the transfer study's scaled configs run one process, with
# the batches of docs/transfer_study.md)
TRANSFER = sorted(c for kind in ('cls', 'seg', 'det') for c in benchmark_configs(kind))
#: per-GPU batch and GPUs of the upstream config each family follows (its name's NxbM
#: for cls/seg; MMDetection ViTDet: 4 per GPU, 64 per step, on 8 GPUs with 2
#: accumulated iterations)
UPSTREAM_PER_GPU = {'cls_ft': 128, 'cls_linear': 2048, 'seg': 2, 'det': 4}


def _family(path):
    kind = osp.basename(osp.dirname(path))
    if kind == 'cls':
        return 'cls_linear' if 'linear' in path else 'cls_ft'
    return kind


def test_every_transfer_family_is_covered():
    assert {_family(c) for c in TRANSFER} == set(UPSTREAM_PER_GPU)
    assert len(TRANSFER) == 14


@pytest.mark.parametrize('path', TRANSFER, ids=osp.basename)
def test_mixed_precision_and_upstream_batch(path):
    cfg = Config.fromfile(path)
    ow = cfg.optim_wrapper
    assert ow.type == 'MixedPrecisionOptimWrapper'
    # its defaults: dtype='auto', loss_scale='dynamic' (the upstream AmpOptimWrapper's)
    assert 'dtype' not in ow and 'loss_scale' not in ow
    assert MixedPrecisionOptimWrapper.choose_precision('auto', 'cuda')[:2] == \
        (torch.float16, True)
    per_gpu = cfg.train_dataloader.batch_size
    assert per_gpu == UPSTREAM_PER_GPU[_family(path)]
    accumulate = ow.get('accumulative_counts', 1)
    m = re.search(r'_(\d+)xb(\d+)-', osp.basename(path))
    if m:  # the name's NxbM tells the truth: GPUs x images per GPU and iteration
        # (OpenMMLab names state no gradient accumulation; ViTDet's 2 accumulated
        # iterations are in the config and docs/training.md)
        assert (int(m.group(1)), int(m.group(2))) == (8, per_gpu)
        assert accumulate == (2 if _family(path) == 'det' else 1)
    total = 8 * per_gpu * accumulate
    assert total == {
        'cls_ft': 1024,
        'cls_linear': 16384,
        'seg': 16,
        'det': 64
    }[_family(path)]
    if 'auto_scale_lr' in cfg:  # MMEngine scales by GPUs x batch_size
        assert cfg.auto_scale_lr.base_batch_size == total // accumulate
