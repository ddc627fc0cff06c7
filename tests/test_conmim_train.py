"""The tiny ConMIM config trains with tools/train.py on real photographs; loss falls."""
import glob
import json
import os.path as osp

import pytest
import torch

from cmae_mm.testing import run_subprocess

pytestmark = pytest.mark.e2e  # real training runs in subprocesses

EPOCHS = 12  # 9 photos, batch 8: 2 iterations per epoch


def _losses(work_dir):
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    assert files, f'no scalars.json under {work_dir}'
    with open(files[-1]) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r['loss'] for r in rows if 'loss' in r]


def test_tiny_conmim_trains_and_loss_falls(repo_root, photo_folder, run_env, tmp_path):
    work_dir = str(tmp_path / 'work')
    cmd = [
        osp.join(repo_root, 'tools/train.py'),
        osp.join(repo_root, 'configs/pretrain/conmim_vit-tiny-p16_1xb8-20e_demo.py'),
        '--work-dir',
        work_dir,
        '--cfg-options',
        f'train_dataloader.dataset.data_root={photo_folder}',
        f'train_cfg.max_epochs={EPOCHS}',
        f'param_scheduler.1.end={EPOCHS}',
        f'default_hooks.checkpoint.interval={EPOCHS}',
    ]
    run_subprocess(cmd, run_env, repo_root, timeout=280)
    losses = _losses(work_dir)
    assert len(losses) == 2 * EPOCHS
    assert all(v == v and v < 1e3 for v in losses)  # finite
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    print(f'ConMIM tiny loss: first iters {losses[:4]} -> last iters {losses[-4:]}')
    assert last < first - 0.3, (first, last, losses)

    # the checkpoint holds both encoders under the project's key convention, and the
    # momentum target has moved away from its copy of the online encoder
    ckpt = torch.load(
        osp.join(work_dir, f'epoch_{EPOCHS}.pth'),
        map_location='cpu',
        weights_only=False)
    sd = ckpt['state_dict']
    online, target = sd['backbone.patch_embed.projection.weight'], \
        sd['target_encoder.module.0.patch_embed.projection.weight']
    assert online.shape == target.shape == (192, 3, 16, 16)
    assert not torch.equal(online, target)
    assert 'target_encoder.module.1.fc2.weight' in sd
    assert int(sd['target_encoder.steps']) == 2 * EPOCHS
