"""CMAE training: 2-process DDP contrastive loss, tools/train.py, exact resume."""
import json
import os
import os.path as osp
import textwrap

import pytest
import torch

from cmae_mm.testing import run_subprocess

pytestmark = pytest.mark.e2e  # real training runs in subprocesses

DEMO_CFG = 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py'

DDP_SCRIPT = textwrap.dedent('''
    import os, sys
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp

    def build_head():
        import cmae_mm  # noqa: F401
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from mmpretrain.registry import MODELS
        init_default_scope('mmpretrain')
        cfg = Config.fromfile(sys.argv[1])
        head_cfg = cfg.model.contrastive_head
        head_cfg.predictor.norm_cfg = dict(type='BN1d')
        torch.manual_seed(0)
        head = MODELS.build(head_cfg)
        head.init_weights()
        # BN with running statistics: each sample's prediction is its own, so
        # the 2 ranks and the single process see the same predictions
        return head.eval()

    def data(B):
        g = torch.Generator().manual_seed(1)
        return (torch.randn(2 * B, 128, generator=g),
                torch.randn(2 * B, 128, generator=g))

    def worker(rank, world, port, out, B):
        dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                                rank=rank, world_size=world)
        head = build_head()
        q_all, k_all = data(B)
        q = q_all[rank * B:(rank + 1) * B].clone().requires_grad_(True)
        loss = head.loss(q, k_all[rank * B:(rank + 1) * B])
        loss.backward()
        grads = [p.grad.clone() for p in head.parameters() if p.grad is not None]
        for g in grads:  # what DDP does: average the gradients over ranks
            dist.all_reduce(g)
            g /= world
        torch.save(dict(loss=loss.detach(), grads=grads, q_grad=q.grad),
                   os.path.join(out, f'rank{rank}.pth'))
        dist.destroy_process_group()

    if __name__ == '__main__':
        import socket
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
        s.close()
        B = int(sys.argv[3])
        if sys.argv[4] == 'ddp':
            mp.spawn(worker, args=(2, port, sys.argv[2], B), nprocs=2)
        else:  # one process, the 2B global batch
            head = build_head()
            q_all, k_all = data(B)
            q = q_all.clone().requires_grad_(True)
            loss = head.loss(q, k_all)
            loss.backward()
            grads = [p.grad.clone() for p in head.parameters() if p.grad is not None]
            torch.save(dict(loss=loss.detach(), grads=grads, q_grad=q.grad),
                       os.path.join(sys.argv[2], 'single.pth'))
''')


def test_ddp_contrastive_loss_equals_global_batch(tmp_path, repo_root, run_env):
    script = tmp_path / 'ddp_infonce.py'
    script.write_text(DDP_SCRIPT)
    cfg = osp.join(repo_root, DEMO_CFG)
    B = 4
    for mode in ('ddp', 'single'):
        run_subprocess([script, cfg, tmp_path, B, mode],
                       run_env,
                       repo_root,
                       timeout=300)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pth') for r in (0, 1))
    single = torch.load(tmp_path / 'single.pth')
    # the loss of the 2B global batch is the mean of the two ranks' losses
    torch.testing.assert_close((r0['loss'] + r1['loss']) / 2, single['loss'])
    assert not torch.allclose(r0['loss'], r1['loss'])
    # DDP's averaged gradients equal the single process's gradients
    assert len(single['grads']) == len(r0['grads']) > 0
    for g0, g1, gs in zip(r0['grads'], r1['grads'], single['grads']):
        torch.testing.assert_close(g0, g1)
        torch.testing.assert_close(g0, gs, rtol=1e-5, atol=1e-7)
    # and each rank's queries get the gradient of their share of the global loss
    q_grad = torch.cat([r0['q_grad'], r1['q_grad']]) / 2
    torch.testing.assert_close(q_grad, single['q_grad'], rtol=1e-5, atol=1e-8)


# Shared by the training tests: the demo config, batch 8, 20 iterations, 3 warm-up
# iterations, raw (unsmoothed) losses logged every iteration, checkpoints at 10 and 20.
TRAIN_OPTS = [
    'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
    'train_cfg.max_iters=20', 'param_scheduler.0.end=3',
    'default_hooks.logger.interval=1', 'log_processor.window_size=1',
    'default_hooks.checkpoint.interval=10', 'default_hooks.checkpoint.max_keep_ckpts=5'
]


def _train(repo_root, run_env, work_dir, photo_folder, resume=None):
    cmd = ['tools/train.py', DEMO_CFG, '--work-dir', work_dir]
    if resume:
        cmd += ['--resume', resume]
    cmd += [
        '--cfg-options', f'train_dataloader.dataset.data_root={photo_folder}',
        *TRAIN_OPTS
    ]
    return run_subprocess(cmd, run_env, repo_root)[0]


def _scalars(work_dir):
    files = sorted(
        osp.join(dp, f) for dp, _, fs in os.walk(work_dir) for f in fs
        if f == 'scalars.json')
    assert files, f'no scalars.json under {work_dir}'
    with open(files[-1]) as f:
        return [json.loads(line) for line in f if '"loss"' in line]


@pytest.fixture(scope='module')
def full_run(tmp_path_factory, repo_root, run_env, photo_folder):
    """An uninterrupted 20-iteration run of the tiny config with tools/train.py."""
    work_dir = tmp_path_factory.mktemp('cmae_full')
    _train(repo_root, run_env, work_dir, photo_folder)
    return work_dir


def test_tiny_config_trains_and_losses_fall(full_run):
    logs = _scalars(full_run)
    assert [r['iter'] for r in logs] == list(range(1, 21))
    assert osp.isfile(full_run / 'iter_20.pth')
    for key in ('loss_rc', 'loss_ct'):
        first = sum(r[key] for r in logs[:5]) / 5
        last = sum(r[key] for r in logs[-5:]) / 5
        assert last < 0.9 * first, (key, first, last)
    for r in logs:  # both logged separately; the total is their sum (weights 1)
        assert abs(r['loss'] - r['loss_rc'] - r['loss_ct']) < 1e-3


def test_resume_equals_uninterrupted_run(full_run, tmp_path, repo_root, run_env,
                                         photo_folder):
    import cmae_mm  # noqa: F401
    from cmae_mm.engine.checkpoint import load_checkpoint_weights_only
    resumed = tmp_path / 'resumed'
    # a run interrupted after iteration 10, resumed with --resume up to 20
    _train(
        repo_root, run_env, resumed, photo_folder, resume=str(full_run / 'iter_10.pth'))
    # torch's default weights-only loading reads the whole training checkpoint
    a = torch.load(full_run / 'iter_20.pth', map_location='cpu')
    b = torch.load(resumed / 'iter_20.pth', map_location='cpu')
    assert a['meta']['iter'] == b['meta']['iter'] == 20
    sa, sb = a['state_dict'], b['state_dict']
    assert set(sa) == set(sb)
    for prefix in ('backbone.', 'target_encoder.module.0.', 'target_encoder.module.1.',
                   'neck.', 'feature_decoder.', 'projector.', 'contrastive_head.',
                   '_extra_state'):
        keys = [k for k in sa if k.startswith(prefix)]
        assert keys, prefix
        for k in keys:
            assert torch.equal(sa[k], sb[k]), k
    # the run really moved on from iteration 10
    s10 = load_checkpoint_weights_only(str(full_run / 'iter_10.pth'))
    for k in ('backbone.layers.0.attn.qkv.weight',
              'target_encoder.module.0.layers.0.attn.qkv.weight',
              'target_encoder.module.1.fc0.weight'):
        assert not torch.equal(s10[k], sa[k]), k
    # optimizer state (AdamW moments and steps of every parameter)
    oa, ob = a['optimizer']['state'], b['optimizer']['state']
    assert set(oa) == set(ob) and len(oa) > 0
    for i in oa:
        for k in oa[i]:
            assert torch.equal(torch.as_tensor(oa[i][k]),
                               torch.as_tensor(ob[i][k])), (i, k)
    assert a['optimizer']['param_groups'][0]['lr'] == \
        b['optimizer']['param_groups'][0]['lr']
    # the losses logged after the resume are the uninterrupted run's
    la = {r['iter']: r['loss'] for r in _scalars(full_run)}
    lb = {r['iter']: r['loss'] for r in _scalars(resumed)}
    assert sorted(lb) == list(range(11, 21))
    for i in range(11, 21):
        assert la[i] == pytest.approx(lb[i], abs=1e-6), i
