"""Shared fixtures. Tests import nothing from a `tests` package (see pytest.ini)."""
import os
import os.path as osp
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PYTHON = sys.executable


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
