"""A run meant for GPUs stops at launch when CUDA is unusable, naming cause and fix
(cmae_mm/engine/cuda_check.py). GPU conditions are simulated as CudaFacts; the probe,
prepare_launch and tools/train.py run for real on this GPU-less machine. A config
whose optional framework does not import stops naming the extra
(cmae_mm/engine/frameworks.py)."""
import glob
import importlib
import importlib.metadata as metadata
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config

from cmae_mm.engine.cuda_check import (CudaFacts, CudaUnusableError, diagnose,
                                       gpu_reasons, probe_cuda, requested_device)
from cmae_mm.engine.cuda_env import nvidia_gpus
from cmae_mm.engine.frameworks import OPTIONAL_FRAMEWORKS, missing_framework_error
from cmae_mm.engine.launch import check_framework, prepare_launch

#: torch 2.14.1+cu130's torch.cuda.get_arch_list()
CU130_ARCHES = ('sm_75', 'sm_80', 'sm_86', 'sm_90', 'sm_100', 'sm_120')
ON_SLURM_GPUS = dict(
    device='auto',
    gpu_reasons=('SLURM_JOB_GPUS=0,1', '2 NVIDIA GPU(s) present (/dev/nvidia0, ...)'),
    torch_version='2.14.1+cu130',
    torch_cuda='13.0',
    driver='580.65.06',
    gpus=('/dev/nvidia0', '/dev/nvidia1'),
    names=('NVIDIA H100 80GB HBM3', ) * 2,
    capabilities=((9, 0), (9, 0)),
    arch_list=CU130_ARCHES)
NO_GPU_HERE = not torch.cuda.is_available() and not nvidia_gpus()


def facts(**kwargs) -> CudaFacts:
    return CudaFacts(**dict(ON_SLURM_GPUS, **kwargs))


def test_usable_gpus_and_cpu_runs_pass():
    assert diagnose(facts(cuda_available=True)) is None
    # a CPU machine, and a GPU node hidden on purpose / asked to run on the CPUs
    assert diagnose(CudaFacts(torch_cuda='13.0')) is None
    assert diagnose(facts(gpu_reasons=(), visible_devices='')) is None
    assert diagnose(facts(device='cpu', driver='470.82.01')) is None


def test_driver_too_old_for_cuda13():
    msg = diagnose(facts(driver='535.104.05'))
    assert msg.startswith('CUDA is unusable, and this run is meant for GPUs '
                          '(SLURM_JOB_GPUS=0,1')
    assert ('the NVIDIA driver 535.104.05 is too old for torch 2.14.1+cu130 '
            '(CUDA 13.0)') in msg
    assert 'needs driver >= 580' in msg
    assert "Fix: upgrade the node's driver to >= 580" in msg
    assert '--device cpu' in msg


def test_driver_too_old_for_cuda12():
    msg = diagnose(
        facts(torch_cuda='12.8', torch_version='2.7.0+cu128', driver='520.61.05'))
    assert 'driver 520.61.05 is too old' in msg and 'needs driver >= 525' in msg
    assert diagnose(facts(torch_cuda='12.8', driver='550.54.15',
                          cuda_available=True)) is None


def test_gpu_architecture_without_kernels():
    v100 = dict(names=('Tesla V100-SXM2-32GB', ), capabilities=((7, 0), ))
    for available in (False, True):  # torch refuses it, or only warns
        msg = diagnose(facts(cuda_available=available, **v100))
        assert ('GPU 0 (Tesla V100-SXM2-32GB) has compute capability 7.0 (sm_70), '
                'and torch 2.14.1+cu130 has kernels only for sm_75 sm_80 sm_86 sm_90 '
                'sm_100 sm_120') in msg
        assert 'Fix: run on GPUs of a listed architecture' in msg
        assert 'with kernels for sm_70' in msg
    # an L40S (8.9) runs the sm_86 kernels
    assert diagnose(facts(cuda_available=True, capabilities=((8, 9), ))) is None


def test_no_device_visible():
    msg = diagnose(
        CudaFacts(
            device='cuda',
            visible_devices='',
            torch_cuda='13.0',
            torch_version='2.14.1+cu130'))
    assert msg.startswith('CUDA is unusable, and --device cuda: no device is visible: '
                          'the NVIDIA driver lists no GPU here')
    assert "CUDA_VISIBLE_DEVICES=''" in msg
    assert 'Fix: run on a GPU node' in msg and '--gres=gpu:N' in msg
    hidden = diagnose(facts(device='cuda', visible_devices='-1'))
    assert ("no device is visible: CUDA_VISIBLE_DEVICES='-1' hides all 2 "
            'GPU(s)') in hidden
    assert 'Fix: unset CUDA_VISIBLE_DEVICES' in hidden
    wrong = diagnose(facts(visible_devices='7'))
    assert "CUDA_VISIBLE_DEVICES='7' selects none of the 2 GPU(s)" in wrong
    assert 'nvidia-smi -L' in wrong


def test_cpu_only_torch_and_unexplained_failure():
    msg = diagnose(facts(torch_cuda=None, torch_version='2.14.1+cpu'))
    assert 'torch 2.14.1+cpu is a CPU-only build' in msg
    assert 'bash tools/setup_env.sh --force' in msg
    other = diagnose(facts(torch_error='CUDA initialization: CUDA unknown error'))
    assert 'torch.cuda.is_available() is False although the driver 580.65.06 lists 2 ' \
        'GPU(s): CUDA initialization: CUDA unknown error' in other
    assert 'Fix: check nvidia-smi' in other


def test_when_a_run_is_meant_for_gpus():
    assert gpu_reasons({}, ()) == ()
    assert gpu_reasons({'SLURM_GPUS_ON_NODE': '4'}, ()) == ('SLURM_GPUS_ON_NODE=4', )
    assert gpu_reasons({'SLURM_GPUS_ON_NODE': '0'}, ()) == ()
    assert gpu_reasons({'CUDA_VISIBLE_DEVICES': '0,1'}, ()) == \
        ('CUDA_VISIBLE_DEVICES=0,1', )
    assert gpu_reasons({}, ('/dev/nvidia0', )) == \
        ('1 NVIDIA GPU(s) present (/dev/nvidia0)', )
    # an empty or -1 CUDA_VISIBLE_DEVICES means a CPU run, whatever else there is
    for hidden in ('', '-1'):
        assert gpu_reasons({
            'CUDA_VISIBLE_DEVICES': hidden,
            'SLURM_JOB_GPUS': '0'
        }, ('/dev/nvidia0', )) == ()


def test_requested_device():
    assert requested_device(None, {}) == 'auto'
    assert requested_device(None, {'CMAE_MM_DEVICE': 'CUDA'}) == 'cuda'
    assert requested_device('cpu', {'CMAE_MM_DEVICE': 'cuda'}) == 'cpu'
    with pytest.raises(ValueError, match="device 'gpu'"):
        requested_device('gpu', {})


@pytest.mark.skipif(not NO_GPU_HERE, reason='needs a machine without NVIDIA GPU')
def test_probe_and_prepare_launch_here(monkeypatch):
    """The real probe on this machine; prepare_launch stops --device cuda before
    anything is built and lets auto / cpu through."""
    here = probe_cuda('auto', {'CUDA_VISIBLE_DEVICES': ''})
    assert (here.gpus, here.cuda_available, here.gpu_reasons) == ((), False, ())
    assert here.torch_cuda == torch.version.cuda
    assert here.arch_list == tuple(torch.cuda.get_arch_list())
    assert diagnose(here) is None
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    with pytest.raises(CudaUnusableError, match='no device is visible') as err:
        prepare_launch(Config(dict(model=dict(type='Nothing'))), 'none', 'cuda')
    assert err.value.code == err.value.message  # SystemExit: message, status 1
    monkeypatch.setenv('CMAE_MM_DEVICE', 'cuda')
    with pytest.raises(CudaUnusableError):
        prepare_launch(Config(dict()), 'none')
    assert prepare_launch(Config(dict()), 'none', 'cpu').launcher == 'none'


@pytest.mark.e2e
@pytest.mark.skipif(not NO_GPU_HERE, reason='needs a machine without NVIDIA GPU')
def test_train_with_device_cuda_stops_at_once(run_tool, photo_folder, tmp_path):
    work = tmp_path / 'work'
    proc, seconds = run_tool([
        'tools/train.py', 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py',
        '--device', 'cuda', '--work-dir', work, '--cfg-options',
        f'train_dataloader.dataset.data_root={photo_folder}', 'train_cfg.max_iters=1'
    ],
                             check=False,
                             timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'CUDA is unusable, and --device cuda: no device is visible' in proc.stderr
    assert 'Fix: run on a GPU node' in proc.stderr
    assert 'Traceback' not in proc.stderr
    # nothing was built: no runner log folder, no checkpoint
    made = glob.glob(osp.join(str(work), '*'))
    assert not [p for p in made if osp.isdir(p) or p.endswith('.pth')], made
    assert seconds < 120, seconds  # imports only; no model, no data
    print(f'tools/train.py --device cuda stopped in {seconds:.1f} s')


def test_environment_variable_names_are_documented(repo_root):
    docs = open(osp.join(repo_root, 'docs', 'training.md')).read()
    for name in ('--device cuda', '--device cpu', 'CMAE_MM_DEVICE'):
        assert name in docs


@pytest.mark.parametrize('module', sorted(OPTIONAL_FRAMEWORKS))
def test_config_of_a_missing_framework_stops_naming_the_extra(module, monkeypatch):
    """check_framework and the transfer placeholders name the same extra, from the
    one table; with the framework installed the check passes."""
    title, extra = OPTIONAL_FRAMEWORKS[module].title, OPTIONAL_FRAMEWORKS[module].extra
    cfg = Config(dict(default_scope=module))
    check_framework(cfg)  # installed here
    check_framework(Config(dict(default_scope='mmpretrain')))  # not optional
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    with pytest.raises(ImportError) as err:
        check_framework(cfg)
    hint = f"Install the extra: pip install 'cmae_mm[{extra}]'"
    assert str(err.value).startswith(
        f"This is an {title} config (default_scope='{module}') but {module} cannot be "
        f'imported (ModuleNotFoundError: import of {module} halted')
    assert hint in str(err.value)
    placeholder = missing_framework_error('Thing', module, 'ImportError: gone')
    assert str(placeholder).startswith(
        f'Thing needs {module}, which cannot be imported here (ImportError: gone). '
        f'{hint}')


def test_optional_frameworks_table_matches_the_package():
    """Every extra of the table is declared by the installed package, serves the
    transfer subpackage of its name, and every placeholder name is a module that
    subpackage registers into the framework's registry."""
    extras = set(metadata.metadata('cmae_mm').get_all('Provides-Extra'))
    for module, framework in OPTIONAL_FRAMEWORKS.items():
        assert framework.extra in extras, (module, framework.extra, extras)
        importlib.import_module(f'cmae_mm.transfer.{framework.extra}')
        registry = importlib.import_module(f'{module}.registry').MODELS
        for name in framework.placeholders:
            assert name in registry.module_dict, (module, name)
