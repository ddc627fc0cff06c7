"""tools/train.py, tools/test.py and tools/dist_train.sh run real training on CPU;
resuming works with torch's weights-only loading on."""
import json
import os
import os.path as osp
import re
import sys

import pytest
import torch

from cmae_mm.testing import run_subprocess

PYTHON = sys.executable


@pytest.fixture(scope='module')
def tiny_cls_root(tmp_path_factory):
    """A CustomDataset folder (one sub-folder per class) of real photographs."""
    from cmae_mm.testing import write_photo_folder
    root = tmp_path_factory.mktemp('tiny_cls')
    write_photo_folder(
        str(root / 'people_animals'), ['astronaut', 'chelsea', 'coffee', 'ihc'])
    write_photo_folder(
        str(root / 'machines_space'),
        ['rocket', 'hubble_deep_field', 'motorcycle_left', 'retina'])
    return str(root)


def _run(cmd, env, cwd):
    proc, _ = run_subprocess(cmd, env, cwd)
    return proc.stdout + proc.stderr


def _scalars(work_dir):
    """Records of MMEngine's scalars.json of the newest run in ``work_dir``."""
    runs = sorted(d for d in os.listdir(work_dir) if re.match(r'\d{8}_\d{6}', d))
    path = osp.join(work_dir, runs[-1], 'vis_data', 'scalars.json')
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.e2e
def test_train_then_test(tiny_cls_root, tmp_path, repo_root, run_env):
    work = str(tmp_path / 'work')
    cfg = osp.join(repo_root, 'tests/data/tiny_cls.py')
    _run([
        PYTHON, 'tools/train.py', cfg, '--work-dir', work, '--cfg-options',
        f'data_root={tiny_cls_root}',
        f'train_dataloader.dataset.data_root={tiny_cls_root}',
        f'val_dataloader.dataset.data_root={tiny_cls_root}'
    ], run_env, repo_root)
    records = [r for r in _scalars(work) if 'loss' in r]
    assert [r['iter'] for r in records] == list(range(1, 9))
    assert osp.isfile(osp.join(work, 'iter_8.pth'))
    out = _run([
        PYTHON, 'tools/test.py', cfg,
        osp.join(work, 'iter_8.pth'), '--work-dir', work, '--cfg-options',
        f'test_dataloader.dataset.data_root={tiny_cls_root}'
    ], run_env, repo_root)
    with open(osp.join(work, 'metrics.json')) as f:
        metrics = json.load(f)
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0
    assert 'accuracy/top1' in out


@pytest.mark.e2e
def test_dist_train_two_cpu_processes(tiny_cls_root, tmp_path, repo_root, run_env):
    """Two gloo processes through torchrun, from a config that names NCCL."""
    work = str(tmp_path / 'dist')
    env = dict(run_env, PORT='29613')
    out = _run([
        'bash', 'tools/dist_train.sh', 'tests/data/tiny_cls.py', '2', '--work-dir',
        work, '--cfg-options', f'train_dataloader.dataset.data_root={tiny_cls_root}',
        f'val_dataloader.dataset.data_root={tiny_cls_root}'
    ], env, repo_root)
    assert re.search(r"Distributed launcher: pytorch", out)
    assert re.search(r"'backend': 'gloo'", out)
    assert re.search(r'Distributed training: True', out)
    # 8 validation images at batch 2: each of the 2 processes runs 2 iterations
    # (a single process would run 4).
    assert re.search(r'Iter\(val\) \[2/2\]', out) and not re.search(r'\[4/4\]', out)
    records = [r for r in _scalars(work) if 'loss' in r]
    assert [r['iter'] for r in records] == list(range(1, 9))
    ckpt = torch.load(osp.join(work, 'iter_8.pth'), map_location='cpu')
    assert ckpt['meta']['iter'] == 8
    # The DDP wrapper's `module.` prefix must not leak into the saved weights.
    assert all(not k.startswith('module.') for k in ckpt['state_dict'])


@pytest.mark.e2e
def test_resume_with_weights_only_loading(tiny_cls_root, tmp_path, repo_root, run_env):
    """An interrupted run resumed with --resume ends where an uninterrupted run ends."""
    cfg = osp.join(repo_root, 'tests/data/tiny_cls.py')
    opts = [
        '--cfg-options', f'train_dataloader.dataset.data_root={tiny_cls_root}',
        f'val_dataloader.dataset.data_root={tiny_cls_root}',
        'train_cfg.val_interval=100'
    ]
    full, part = str(tmp_path / 'full'), str(tmp_path / 'part')
    _run([PYTHON, 'tools/train.py', cfg, '--work-dir', full] + opts, run_env, repo_root)
    # "Interrupted" after iteration 4: the schedule (explicit `end`) stays that of 8.
    _run([PYTHON, 'tools/train.py', cfg, '--work-dir', part] + opts +
         ['train_cfg.max_iters=4'], run_env, repo_root)
    assert osp.isfile(osp.join(part, 'iter_4.pth'))
    # torch >= 2.6 loads weights-only by default; without cmae_mm's allow-list the
    # MMEngine checkpoint does not load that way (HistoryBuffer, numpy objects).
    probe, _ = run_subprocess([
        '-c', 'import sys, torch; torch.load(sys.argv[1], weights_only=True)',
        osp.join(part, 'iter_4.pth')
    ],
                              run_env,
                              repo_root,
                              check=False)
    assert probe.returncode != 0 and 'Weights only load failed' in probe.stderr
    out = _run([PYTHON, 'tools/train.py', cfg, '--work-dir', part, '--resume'] + opts,
               run_env, repo_root)
    assert 'resumed epoch: 0, iter: 4' in out
    a = torch.load(osp.join(full, 'iter_8.pth'), map_location='cpu')
    b = torch.load(osp.join(part, 'iter_8.pth'), map_location='cpu')
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for k in a['state_dict']:
        torch.testing.assert_close(
            a['state_dict'][k], b['state_dict'][k], rtol=1e-5, atol=1e-6, msg=k)
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k]['exp_avg'], sb[k]['exp_avg'])
        assert sa[k]['step'] == sb[k]['step']


def test_weights_only_allow_list_is_exact():
    from mmengine.logging import HistoryBuffer

    from cmae_mm.engine.checkpoint import (MMENGINE_CHECKPOINT_GLOBALS,
                                           allow_mmengine_checkpoint_globals)
    allow_mmengine_checkpoint_globals()
    safe = torch.serialization.get_safe_globals()
    assert HistoryBuffer in safe
    assert set(MMENGINE_CHECKPOINT_GLOBALS) <= set(safe)
    assert os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD') in (None, '0', '')


def test_weights_only_still_refuses_arbitrary_getattr(tmp_path):
    """The allow-list maps `getattr` to HistoryBuffer's statistics methods only."""
    from mmengine.logging import HistoryBuffer

    from cmae_mm.engine.checkpoint import allow_mmengine_checkpoint_globals
    allow_mmengine_checkpoint_globals()

    class Evil:

        def __reduce__(self):
            # An allowed class, but an attribute that is no statistics method.
            return getattr, (HistoryBuffer, '__init__')

    path = str(tmp_path / 'evil.pth')
    torch.save({'x': Evil()}, path)
    with pytest.raises(Exception, match='only HistoryBuffer statistics methods'):
        torch.load(path, weights_only=True)


def test_no_validate_accepts_options_for_the_validation_data(repo_root, monkeypatch):
    """``--no-validate`` drops the validation loop after ``--cfg-options`` are merged:
    options that set the validation data (a runner passing the same options to
    tools/train.py and tools/test.py) are accepted, not refused by MMEngine's merge
    into ``None``."""
    import importlib.util

    from mmengine.config import Config
    spec = importlib.util.spec_from_file_location('train_tool',
                                                  osp.join(repo_root, 'tools/train.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    config = osp.join(repo_root, 'configs', 'cls',
                      'cmae_vit-tiny-p4_1xb128-coslr-5e_fashion-mnist-32px.py')
    monkeypatch.setattr(sys, 'argv', [
        'train.py', config, '--no-validate', '--cfg-options',
        'val_dataloader.dataset.data_root=/elsewhere',
        'train_dataloader.dataset.data_root=/elsewhere'
    ])
    cfg = tool.merge_args(Config.fromfile(config), tool.parse_args())
    assert cfg.val_dataloader is None and cfg.val_cfg is None
    assert cfg.val_evaluator is None
    assert cfg.train_dataloader.dataset.data_root == '/elsewhere'
