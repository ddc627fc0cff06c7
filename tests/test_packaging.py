"""Packaging for a plugin (docs/installation.md): ranges in install_requires, extras, a
constraints file that is the verified environment, an install that changes nothing in
our own environment, and `mim train cmae_mm CONFIG` from a built wheel."""
import importlib.metadata as metadata
import json
import os
import os.path as osp
import re
import shutil

import pytest
from packaging.requirements import Requirement

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RANGE_FILES = ('runtime.txt', 'mminstall.txt', 'seg.txt', 'det.txt', 'tests.txt')
# openmim and the packages it imports at start-up, installed without their other
# dependencies (openmim's `opendatalab` pins old setuptools/requests/rich and is only
# needed for `mim download`); cached between runs.
MIM_PACKAGES = [
    'openmim==0.3.9', 'colorama==0.4.6', 'tabulate==0.10.0', 'pandas==2.2.3',
    'pytz==2026.6', 'requests==2.34.2', 'urllib3==2.8.0', 'idna==3.20',
    'charset-normalizer==3.5.2', 'certifi==2026.10.18'
]


def requirements(name):
    with open(osp.join(REPO, 'requirements', name)) as f:
        return [
            Requirement(line.split('#')[0].strip()) for line in f
            if line.split('#')[0].strip()
        ]


@pytest.mark.parametrize('name', RANGE_FILES)
def test_install_requires_are_compatible_ranges(name):
    for req in requirements(name):
        assert not any(s.operator in ('==', '===') for s in req.specifier), req
        if req.name in ('torch', 'torchvision', 'numpy'):
            assert not any(s.operator in ('<', '<=') for s in req.specifier), req


def test_installed_metadata_declares_the_ranges_and_extras():
    """What pip recorded when tools/setup_env.sh installed cmae_mm (editable)."""
    meta = metadata.metadata('cmae_mm')
    assert set(meta.get_all('Provides-Extra')) == {
        'seg', 'det', 'tensorboard', 'tests', 'all'
    }
    declared = [Requirement(r) for r in metadata.requires('cmae_mm')]
    base = {r.name.lower() for r in declared if r.marker is None}
    assert base == {
        r.name.lower()
        for f in ('runtime.txt', 'mminstall.txt')
        for r in requirements(f)
    }
    assert 'mmsegmentation' not in base and 'mmdet' not in base
    extras = {(r.name.lower(), str(r.marker)) for r in declared if r.marker}
    assert ('mmsegmentation', 'extra == "seg"') in extras
    assert ('mmdet', 'extra == "det"') in extras
    assert ('pycocotools', 'extra == "det"') in extras
    assert ('tensorboard', 'extra == "tensorboard"') in extras


def test_constraints_are_exact_and_are_this_environment():
    """The lock file pins every package exactly, and it is what is installed here."""
    pins = {}
    with open(osp.join(REPO, 'requirements', 'constraints.txt')) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line:
                name, version = re.fullmatch(r'([\w.-]+)==([\w.+-]+)', line).groups()
                pins[name.lower()] = version
    for name in ('torch', 'torchvision', 'numpy', 'mmcv', 'mmengine', 'mmpretrain',
                 'mmsegmentation', 'mmdet'):
        assert name in pins, name
    wrong = {
        n: (v, metadata.version(n))
        for n, v in pins.items() if metadata.version(n).split('+')[0] != v
    }
    assert not wrong, wrong


@pytest.mark.e2e
def test_pip_install_into_its_own_environment_changes_nothing(run_tool):
    """`pip install --dry-run -e .[all]` into the verified environment would install
    cmae_mm itself and nothing else: no package replaced, none added."""
    proc, _ = run_tool([
        '-m', 'pip', 'install', '--dry-run', '--no-build-isolation', '--quiet',
        '--disable-pip-version-check', '--report', '-', '-e', '.[all]'
    ],
                       timeout=300)
    report = json.loads(proc.stdout)
    assert [i['metadata']['name'] for i in report['install']] == ['cmae_mm']
    proc, _ = run_tool(['-m', 'pip', 'check', '--disable-pip-version-check'])
    assert 'No broken requirements found' in proc.stdout


def _mim_site(run_tool):
    """A folder with openmim importable, made once and cached."""
    cache = os.environ.get('CMAE_MM_CACHE', osp.expanduser('~/.cache/cmae_mm'))
    site = osp.join(cache, 'openmim-0.3.9-site')
    if osp.isfile(osp.join(site, '.complete')):
        return site
    shutil.rmtree(site + '.partial', ignore_errors=True)
    proc, _ = run_tool([
        '-m', 'pip', 'install', '--quiet', '--no-deps', '--disable-pip-version-check',
        '--target', site + '.partial', *MIM_PACKAGES
    ],
                       timeout=600,
                       check=False)
    if proc.returncode != 0:
        pytest.skip('openmim could not be installed from the package registry: ' +
                    proc.stderr.strip().splitlines()[-1])
    shutil.rmtree(site, ignore_errors=True)
    os.replace(site + '.partial', site)
    open(osp.join(site, '.complete'), 'w').close()
    return site


@pytest.mark.e2e
def test_mim_train_runs_the_tiny_config_from_a_wheel(run_tool, photo_folder, tmp_path):
    """A wheel carries configs and tools as cmae_mm/.mim; `mim train cmae_mm CONFIG`
    (config by name, found inside the package) trains from it."""
    mim_site = _mim_site(run_tool)
    run_tool([
        '-m', 'pip', 'wheel', '--quiet', '--no-deps', '--no-build-isolation',
        '--disable-pip-version-check', '.', '-w', tmp_path / 'wheel'
    ],
             timeout=300)
    wheel = next((tmp_path / 'wheel').glob('cmae_mm-*.whl'))
    site = tmp_path / 'site'
    run_tool(['-m', 'pip', 'install', '--quiet', '--no-deps', '--target', site, wheel],
             timeout=300)
    assert (site / 'cmae_mm' / '.mim' / 'configs' / 'pretrain' /
            'cmae_vit-b.py').is_file()
    assert (site / 'cmae_mm' / '.mim' / 'tools' / 'train.py').is_file()
    work = tmp_path / 'work'
    proc, _ = run_tool([
        '-m', 'mim', 'train', 'cmae_mm', 'cmae_vit-tiny-p16_1xb8-800iter_demo.py',
        '--work-dir', work, '--cfg-options',
        f'train_dataloader.dataset.data_root={photo_folder}', 'train_cfg.max_iters=2',
        'default_hooks.checkpoint.interval=2', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False'
    ],
                       env={'PYTHONPATH': os.pathsep.join([str(site), mim_site])},
                       cwd=str(tmp_path))
    # mim found the config inside the installed package, not in the repository
    assert ('cmae_mm/.mim/configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py'
            in proc.stdout)
    assert (work / 'iter_2.pth').is_file()
    assert 'Training finished successfully' in proc.stdout
