"""Shared fixtures. Tests import nothing from a `tests` package (see pytest.ini)."""
import os
import os.path as osp
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PYTHON = sys.executable


@pytest.fixture(scope='session', autouse=True)
def weights_only_allow_list() -> None:
    """Tests read MMEngine checkpoints with ``torch.load`` as a user's script would, so
    like one they install cmae_mm's weights-only allow-list first (importing cmae_mm
    does not; docs/checkpoints.md). What happens without it is tested in fresh
    processes (tests/test_checkpoint_home.py)."""
    from cmae_mm.engine.checkpoint import allow_mmengine_checkpoint_globals
    allow_mmengine_checkpoint_globals()


@pytest.fixture(scope='session')
def repo_root() -> str:
    return REPO_ROOT


@pytest.fixture(scope='session')
def photos():
    """``{name: uint8 RGB array (H, W, 3)}`` of the photographs inside scikit-image."""
    from cmae_mm.testing import load_photos
    return load_photos()


@pytest.fixture(scope='session')
def photo_folder(tmp_path_factory) -> str:
    """A plain folder of the bundled photographs as JPEG files."""
    from cmae_mm.testing import write_photo_folder
    root = str(tmp_path_factory.mktemp('photos'))
    write_photo_folder(root)
    return root


@pytest.fixture(scope='session')
def run_env():
    """Environment for subprocesses running the project's tools on CPU."""
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO_ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('OMP_NUM_THREADS', '1')
    env['CUDA_VISIBLE_DEVICES'] = ''
    return env


@pytest.fixture(scope='session')
def run_tool(run_env):
    """``run_tool(args, timeout=600, check=True, env=None, cwd=REPO_ROOT) ->
    (CompletedProcess, seconds)``: ``cmae_mm.testing.run_subprocess`` on CPU with the
    project's environment (``env`` entries are added to it)."""

    def run(args, timeout=600, check=True, env=None, cwd=REPO_ROOT):
        from cmae_mm.testing import run_subprocess
        full_env = dict(run_env, **(env or {}))
        return run_subprocess(args, full_env, cwd, timeout=timeout, check=check)

    return run


@pytest.fixture(scope='session')
def cmae_pretrain_ckpt(tmp_path_factory, photo_folder, run_tool) -> str:
    """A real tiny CMAE pretraining checkpoint, made once per session: 2 iterations of
    tools/train.py on configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py over
    the photographs."""
    work = str(tmp_path_factory.mktemp('cmae_demo_pretrain'))
    run_tool([
        'tools/train.py', 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py',
        '--work-dir', work, '--cfg-options',
        f'train_dataloader.dataset.data_root={photo_folder}', 'train_cfg.max_iters=2',
        'default_hooks.checkpoint.interval=2', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False'
    ])
    return osp.join(work, 'iter_2.pth')


@pytest.fixture(scope='module')
def registry():
    """MMPretrain's MODELS with cmae_mm registered, default scope mmpretrain."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import cmae_mm  # noqa: F401
    init_default_scope('mmpretrain')
    return MODELS
