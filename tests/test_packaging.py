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
        'train_dataloader.persistent_workers=False', '--auto-scale-lr'
    ],
                       env={'PYTHONPATH': os.pathsep.join([str(site), mim_site])},
                       cwd=str(tmp_path))
    # mim found the config inside the installed package, not in the repository
    assert ('cmae_mm/.mim/configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py'
            in proc.stdout)
    assert (work / 'iter_2.pth').is_file()
    assert 'Training finished successfully' in proc.stdout
    # the flags after the config reach tools/train.py: --auto-scale-lr, 1 x 8 / 8
    assert ('LR is set based on batch size of 8 and the current batch size is 8. '
            'Scaling the original LR by 1.0.') in proc.stdout


@pytest.mark.e2e
def test_another_launcher_builds_the_checked_runner(run_tool, photo_folder, tmp_path):
    """MMPretrain's own tools/train.py (not ours) builds the config's
    ``runner_type='CheckedRunner'`` with ``RUNNERS.build``, so the run checks apply:
    the work-dir lock is taken and the training samples are seeded
    (docs/training.md, "Running with mim train or another launcher")."""
    import mmpretrain
    tool = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools', 'train.py')
    work = tmp_path / 'work'
    proc, _ = run_tool([
        tool, 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py', '--work-dir',
        work, '--cfg-options', f'train_dataloader.dataset.data_root={photo_folder}',
        'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False'
    ])
    assert (work / 'iter_2.pth').is_file()
    assert (work / '.train.lock').is_file()  # CheckedRunner's work-dir lock
    assert 'train_sample_seeding: every training sample is seeded' in proc.stdout


def test_train_tool_refuses_a_runner_that_drops_the_checks():
    """tools/train.py builds the config's runner_type, CheckedRunner where none is
    named, and stops on a runner type that is not a CheckedRunner."""
    import importlib.util

    from mmengine.config import Config

    from cmae_mm.engine.runner import CheckedRunner
    spec = importlib.util.spec_from_file_location('train_tool',
                                                  osp.join(REPO, 'tools', 'train.py'))
    train_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_tool)
    cfg = Config(dict(runner_type='Runner'))
    with pytest.raises(ValueError, match="runner_type='Runner'.*CheckedRunner"):
        train_tool.build_runner(cfg)

    class MyRunner(CheckedRunner):
        built = None

        @classmethod
        def from_cfg(cls, cfg):
            cls.built = cfg
            return 'built'

    from mmengine.registry import RUNNERS
    RUNNERS.register_module(module=MyRunner, force=True)
    try:
        assert train_tool.build_runner(Config(dict(runner_type='MyRunner'))) == 'built'
        assert MyRunner.built.runner_type == 'MyRunner'
        cfg = Config(dict(work_dir='x'))
        assert 'runner_type' not in cfg
        with pytest.raises(KeyError, match='model'):  # Runner.from_cfg reads cfg.model
            train_tool.build_runner(cfg)
        assert cfg.runner_type == 'CheckedRunner'
    finally:
        RUNNERS.module_dict.pop('MyRunner')


def test_test_tool_builds_the_configs_runner_without_taking_the_lock(tmp_path):
    """tools/test.py builds the config's CheckedRunner without the training parts, so
    no work-dir lock is taken (a checkpoint can be tested while its run trains)."""
    import importlib.util

    from mmengine.config import Config
    from mmengine.registry import RUNNERS

    from cmae_mm.engine.runner import CheckedRunner
    spec = importlib.util.spec_from_file_location('test_tool',
                                                  osp.join(REPO, 'tools', 'test.py'))
    test_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_tool)
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'pretrain', 'cmae_vit-tiny-p16_1xb8-800iter_demo.py'))
    cfg.work_dir = str(tmp_path)
    runner = RUNNERS.build(test_tool.without_training(cfg))
    assert type(runner) is CheckedRunner
    assert runner._train_loop is None
    assert runner._work_dir_lock is None
    assert not (tmp_path / '.train.lock').exists()
