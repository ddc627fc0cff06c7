"""Per-rank randomness across workers and resumes (docs/training.md, "Randomness
across ranks and resumes"): CMAE's derived mask seeds, SeededSampler /
SeededDataset, and two-process runs through tools/dist_train.sh (gloo) resumed from
their checkpoints; the non-finite guard's all-reduce with a NaN on one rank."""
import io
import json
import logging
import os.path as osp
import random
import socket

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.registry import DATASETS
from mmengine.runner import Runner
from torch.utils.data import Dataset

CMAE_CFG = 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py'
CONMIM_CFG = 'configs/pretrain/conmim_vit-tiny-p16_1xb8-20e_demo.py'


# --------------------------------------------------------------- data pipelines
@DATASETS.register_module(force=True)
class DrawsDataset(Dataset):
    """Each item: the draws of its 'pipeline' from the three global generators."""

    def __len__(self):
        return 12

    def __getitem__(self, idx):
        return torch.tensor([
            idx,
            random.random(),
            np.random.rand(),
            torch.rand(1).item(),
        ],
                            dtype=torch.float64)


def _epochs(loader, epochs):
    """{(epoch, sample index): draws} over ``epochs`` (set_epoch as MMEngine's
    DistSamplerSeedHook does)."""
    out = {}
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            for row in batch:
                out[(epoch, int(row[0]))] = tuple(row[1:].tolist())
    return out


def _loader(workers, persistent, seeded, seed=0):
    from cmae_mm.engine.randomness import seed_train_samples
    cfg = dict(
        dataset=dict(type='DrawsDataset'),
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_size=2,
        num_workers=workers,
        persistent_workers=persistent,
        collate_fn=dict(type='default_collate'))
    if seeded:
        assert seed_train_samples(cfg) is None
    return Runner.build_dataloader(cfg, seed=seed)


def test_mmengine_worker_seeds_repeat_every_epoch():
    """The fault: MMEngine's worker_init_fn seeds non-persistent workers alike in
    every epoch, so the k-th sample of a worker gets the same draws each epoch."""
    draws = _epochs(_loader(2, False, seeded=False), [0, 1])
    assert sorted(v for (e, _), v in draws.items() if e == 0) == \
        sorted(v for (e, _), v in draws.items() if e == 1)


def test_seeded_samples_do_not_depend_on_workers_and_resume_exactly():
    import cmae_mm  # noqa: F401  (registers the wrappers)
    torch.manual_seed(0)
    state = np.random.get_state()[1].copy(), random.getstate()
    ref = _epochs(_loader(0, False, seeded=True), [0, 1, 2])
    # the main process's own generators are untouched by the seeded pipeline; torch's
    # only moved by the DataLoader's own base-seed draw at each epoch's iterator
    assert np.array_equal(np.random.get_state()[1], state[0])
    assert random.getstate() == state[1]
    after = torch.get_rng_state()
    torch.manual_seed(0)
    for _ in range(3):
        torch.empty((), dtype=torch.int64).random_()
    assert torch.equal(after, torch.get_rng_state())
    assert len(ref) == 36
    for workers, persistent in ((2, True), (2, False), (1, True)):
        assert _epochs(_loader(workers, persistent, seeded=True), [0, 1, 2]) == ref
    # a run resumed at epoch 2 (a fresh loader) draws what the uninterrupted one drew
    resumed = _epochs(_loader(2, True, seeded=True), [2])
    assert resumed == {k: v for k, v in ref.items() if k[0] == 2}
    # every sample's draws change from epoch to epoch; another seed changes them all
    for i in range(12):
        assert len({ref[(e, i)] for e in range(3)}) == 3
    other = _epochs(_loader(0, False, seeded=True, seed=1), [0])
    assert all(other[k] != ref[k] for k in other)


def test_sample_seeding_is_skipped_with_a_batch_sampler():
    from cmae_mm.engine.randomness import seed_train_samples
    cfg = dict(
        dataset=dict(type='DrawsDataset'),
        sampler=dict(type='DefaultSampler'),
        batch_sampler=dict(type='AspectRatioBatchSampler'))
    assert 'batch_sampler' in seed_train_samples(cfg)
    assert cfg['dataset'] == dict(type='DrawsDataset')


# ------------------------------------------------------------------ CMAE masks
def _tiny_cmae(registry, repo_root):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(repo_root, CMAE_CFG))
    return registry.build(cfg.model)


def test_cmae_masks_derive_from_seed_rank_and_draw(registry, repo_root):
    torch.manual_seed(0)
    a = _tiny_cmae(registry, repo_root)
    x = torch.randn(2, 3, 224, 224)
    masks = [a.backbone(x, generator=a.next_mask_generator(x.device))[1] for _ in '12']
    assert not torch.equal(*masks)
    assert a.mask_draws == 2
    state = a.state_dict()['_extra_state']
    assert state.dtype == torch.int64 and state.tolist() == [a.mask_seed, 2]
    # the same seed from the same global seed; another rank: other masks
    torch.manual_seed(0)
    assert _tiny_cmae(registry, repo_root).mask_seed == a.mask_seed
    assert a.mask_draw_seed(0, rank=1) != a.mask_draw_seed(0, rank=0)
    # a model loading the state continues with the third draw
    torch.manual_seed(1)
    b = _tiny_cmae(registry, repo_root)
    assert b.mask_seed != a.mask_seed
    b.load_state_dict(a.state_dict())
    assert (b.mask_seed, b.mask_draws) == (a.mask_seed, 2)
    assert torch.equal(
        a.backbone(x, generator=a.next_mask_generator(x.device))[1],
        b.backbone(x, generator=b.next_mask_generator(x.device))[1])
    # an older checkpoint (one CPU generator's uint8 state) loads, with a warning
    old = dict(
        a.state_dict(), _extra_state=torch.Generator().manual_seed(5).get_state())
    c = _tiny_cmae(registry, repo_root)
    logger, log = MMLogger.get_current_instance(), io.StringIO()
    handler = logging.StreamHandler(log)
    logger.addHandler(handler)
    try:
        c.load_state_dict(old)
    finally:
        logger.removeHandler(handler)
    assert c.mask_draws == 0 and 0 <= c.mask_seed < 2**62
    assert "_extra_state is the single mask generator state of an older cmae_mm" in \
        log.getvalue()
    bad = dict(a.state_dict(), _extra_state=torch.zeros(3))
    with pytest.raises(ValueError, match='_extra_state must be the int64'):
        c.load_state_dict(bad)


# ------------------------------------------------- two processes, resumed runs
def _free_port() -> str:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def _config(tmp_path, repo_root, base, probe='dict(type="RankProbeHook")'):
    path = tmp_path / f'probe_{osp.basename(base)}'
    path.write_text(
        f'_base_ = [{osp.join(repo_root, base)!r}]\n'
        "custom_imports = dict(imports=['cmae_mm', 'cmae_mm.testing.probes'],"
        ' allow_failed_imports=False)\n'
        f"custom_hooks = [dict(type='TargetUpdateHook'), {probe}]\n")
    return str(path)


def _dist_train(run_tool, cfg, work, data, *options, resume=None, check=True):
    args = ['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', work]
    if resume is not None:
        args += ['--resume', resume]
    args += [
        '--cfg-options', f'train_dataloader.dataset.data_root={data}',
        'default_hooks.logger.interval=1', *options
    ]
    # One intra-op thread per rank, as torchrun sets by default: with two (what
    # tools/run_tests.sh exports), ConMIM's CPU step at the second iteration after the
    # resume gave weights differing in the last bits while batch, masks and losses were
    # equal (a thread-dependent float reduction, not the randomness tested here).
    proc, _ = run_tool(
        args, check=check, env=dict(PORT=_free_port(), OMP_NUM_THREADS='1'))
    return proc.returncode, proc.stdout + proc.stderr


def _probe(work, rank):
    with open(osp.join(work, f'probe_rank{rank}.jsonl')) as f:
        return {r['iter']: r for r in map(json.loads, f)}


def _check_resumed(full, resumed, first_resumed_iter, mask_key):
    for rank in (0, 1):
        a, b = _probe(full, rank), _probe(resumed, rank)
        assert sorted(b) == [i for i in sorted(a) if i >= first_resumed_iter]
        for i in b:  # the same batch, masks, losses and weights on this rank
            assert a[i] == b[i], (rank, i)
    r0, r1 = _probe(full, 0), _probe(full, 1)
    for i in r0:  # each rank its own masks and images, before and after the resume
        assert r0[i][mask_key] and r0[i][mask_key] != r1[i][mask_key], i
        assert r0[i]['inputs'] != r1[i]['inputs'], i
        assert r0[i]['weights'] == r1[i]['weights'], i  # DDP keeps them equal
    return r0, r1


@pytest.mark.e2e
def test_cmae_two_ranks_resume_exactly(run_tool, repo_root, photo_folder, tmp_path):
    """Iteration loop, InfiniteSampler, two workers per rank; resumed after iteration
    2 of 4."""
    cfg = _config(tmp_path, repo_root, CMAE_CFG)
    opts = [
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=2',
        'train_dataloader.persistent_workers=True', 'train_cfg.max_iters=4',
        'default_hooks.checkpoint.interval=2',
        'default_hooks.checkpoint.max_keep_ckpts=2'
    ]
    full, resumed = str(tmp_path / 'full'), str(tmp_path / 'resumed')
    _, out = _dist_train(run_tool, cfg, full, photo_folder, *opts)
    assert 'train_sample_seeding: every training sample is seeded' in out
    _dist_train(
        run_tool,
        cfg,
        resumed,
        photo_folder,
        *opts,
        resume=osp.join(full, 'iter_2.pth'))
    r0, _ = _check_resumed(full, resumed, 3, 'model_masks')
    assert sorted(r0) == list(range(1, 5))
    a = torch.load(osp.join(full, 'iter_4.pth'), map_location='cpu')
    b = torch.load(osp.join(resumed, 'iter_4.pth'), map_location='cpu')
    for k, v in a['state_dict'].items():
        assert torch.equal(v, b['state_dict'][k]), k
    assert a['state_dict']['_extra_state'][1] == 4  # four draws on each rank


@pytest.mark.e2e
def test_conmim_two_ranks_epochs_resume_exactly(run_tool, repo_root, photo_folder,
                                                tmp_path):
    """Epoch loop, masks from the pipeline, two persistent workers per rank; resumed
    after epoch 1 of 2."""
    cfg = _config(tmp_path, repo_root, CONMIM_CFG)
    opts = [
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=2',
        'train_dataloader.persistent_workers=True', 'train_cfg.max_epochs=2',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=3'
    ]
    full, resumed = str(tmp_path / 'full'), str(tmp_path / 'resumed')
    _dist_train(run_tool, cfg, full, photo_folder, *opts)
    r0, r1 = _probe(full, 0), _probe(full, 1)
    first_of_epoch_2 = min(i for i, r in r0.items() if r['epoch'] == 1)
    _dist_train(
        run_tool,
        cfg,
        resumed,
        photo_folder,
        *opts,
        resume=osp.join(full, 'epoch_1.pth'))
    _check_resumed(full, resumed, first_of_epoch_2, 'data_masks')
    assert {r['epoch'] for r in r0.values()} == {0, 1}
    # a sample's mask changes from epoch to epoch
    seen = {}
    for rec in list(r0.values()) + list(r1.values()):
        for idx, mask in zip(rec['sample_idx'], rec['sample_masks']):
            seen.setdefault(idx, {}).setdefault(rec['epoch'], set()).add(mask)
    repeated = [v for v in seen.values() if len(v) > 1]
    assert repeated
    for by_epoch in repeated:
        masks = [m for ms in by_epoch.values() for m in ms]
        assert len(set(masks)) == len(masks)


@pytest.mark.e2e
def test_nan_on_one_rank_skips_the_step_on_both(run_tool, repo_root, photo_folder,
                                                tmp_path):
    """NonFiniteGuardHook all-reduces its flag: rank 1 alone has a NaN loss at
    iteration 2, both ranks skip that step (no DDP hang) and train on."""
    cfg = _config(tmp_path, repo_root, CMAE_CFG,
                  'dict(type="RankProbeHook", nan_rank=1, nan_iter=2)')
    work = str(tmp_path / 'nan')
    _dist_train(run_tool, cfg, work, photo_folder, 'train_dataloader.batch_size=2',
                'train_dataloader.num_workers=0',
                'train_dataloader.persistent_workers=False', 'train_cfg.max_iters=3',
                'default_hooks.checkpoint.interval=3',
                "default_hooks.nonfinite_guard.action='skip'")
    r0, r1 = _probe(work, 0), _probe(work, 1)
    assert sorted(r0) == sorted(r1) == [1, 2, 3]
    assert all(np.isfinite(float.fromhex(v)) for v in r0[2]['losses'].values())
    assert all(np.isnan(float.fromhex(v)) for v in r1[2]['losses'].values())
    for r in (r0, r1):
        assert r[2]['weights'] == r[1]['weights']  # step 2 skipped on both ranks
        assert r[3]['weights'] != r[2]['weights']  # and training went on
    assert all(r0[i]['weights'] == r1[i]['weights'] for i in (1, 2, 3))
    # action='stop': both ranks stop at that iteration
    code, out = _dist_train(
        run_tool,
        cfg,
        str(tmp_path / 'stop'),
        photo_folder,
        'train_dataloader.batch_size=2',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'train_cfg.max_iters=3',
        check=False)
    assert code != 0
    assert 'FloatingPointError: Non-finite loss at iteration 2 (epoch 1): ' \
        'loss=nan' in out
    # rank 0 stops too (unless torchrun's SIGTERM, sent when rank 1 exits, is first)
    assert sorted(_probe(str(tmp_path / 'stop'), 0)) == [1]
    if '[rank0]: FloatingPointError' in out:
        assert '[rank0]: FloatingPointError: Non-finite loss on another process at ' \
            'iteration 2' in out
