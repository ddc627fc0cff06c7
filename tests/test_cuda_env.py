"""tools/setup_env.sh on GPU machines: which nvcc, which architectures, which cache key
(cmae_mm/engine/cuda_env.py). The machine facts are simulated; the file layout, nvcc's
version parsing, the CLI and the check of the installed MMCV run for real."""
import os
import os.path as osp
import re
import shlex
import stat
import subprocess
import sys

import pytest
import torch

from cmae_mm.engine.cuda_env import (BuildFacts, Nvcc, arch_runs_on, arch_tag,
                                     cache_key, find_compilers, make_cuda_home,
                                     mmcv_ops_problem, no_compiler_message,
                                     nvcc_version, parse_nvcc_version, plan_build,
                                     resolve_arch_list)

#: torch 2.14.1+cu130's torch.cuda.get_arch_list()
CU130_ARCHES = ('sm_75', 'sm_80', 'sm_86', 'sm_90', 'sm_100', 'sm_120')
NVCC_13_0 = Nvcc('/opt/cuda-13.0/bin/nvcc', '13.0', '$CUDA_HOME', '/opt/cuda-13.0')
NVCC_12_4 = Nvcc('/usr/local/cuda-12.4/bin/nvcc', '12.4', '/usr/local/cuda-12.4',
                 '/usr/local/cuda-12.4')
#: a wrapper script on PATH (exec /usr/local/cuda-13.0/bin/nvcc "$@")
WRAPPER_13_0 = Nvcc('/usr/local/bin/nvcc', '13.0', 'PATH', None)
CU13_PACKAGES = ('nvidia-cuda-nvcc==13.0.*', 'nvidia-cuda-crt==13.0.*',
                 'nvidia-nvvm==13.0.*', 'nvidia-cuda-cccl==13.0.*',
                 'nvidia-cuda-runtime==13.0.*')


def gpu_facts(**kwargs) -> BuildFacts:
    """An H100 node with torch cu130 and, unless given, no compiler."""
    return BuildFacts(**dict(
        dict(
            torch_cuda='13.0',
            gpus_present=True,
            capabilities=((9, 0), ),
            torch_arches=CU130_ARCHES), **kwargs))


def test_parse_nvcc_version():
    text = ('nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2025 NVIDIA '
            'Corporation\nBuilt on Wed_Aug_20_01:58:59_PM_PDT_2025\n'
            'Cuda compilation tools, release 13.0, V13.0.88\n'
            'Build cuda_13.0.r13.0/compiler.36424714_0\n')
    assert parse_nvcc_version(text) == '13.0'
    assert parse_nvcc_version('command not found') is None


def test_matching_toolkit_is_used_and_mismatching_one_skipped():
    plan = plan_build(gpu_facts(compilers=(NVCC_12_4, WRAPPER_13_0, NVCC_13_0)))
    assert plan.ops == 'cuda'
    assert plan.cuda_home == '/opt/cuda-13.0'
    assert plan.pip_packages == ()
    assert plan.arch_list == '8.0;9.0+PTX'
    assert plan.tag == 'cu130_sm80-90_ptx90'
    assert plan.found[:2] == (
        'nvcc 12.4 at /usr/local/cuda-12.4/bin/nvcc (/usr/local/cuda-12.4)',
        'nvcc 13.0 at /usr/local/bin/nvcc (PATH, not inside a CUDA toolkit)')


def test_cuda12_toolkit_only_gives_pip_packages_for_cuda13():
    plan = plan_build(gpu_facts(compilers=(NVCC_12_4, )))
    assert plan.ops == 'cuda'
    assert plan.cuda_home == ''
    assert plan.pip_packages == CU13_PACKAGES
    assert plan.tag == 'cu130_sm80-90_ptx90'


def test_no_compiler_for_cuda12_torch_says_what_to_do():
    facts = gpu_facts(
        torch_cuda='12.8',
        compilers=(NVCC_13_0, ),
        torch_arches=('sm_50', 'sm_80', 'sm_90'))
    plan = plan_build(facts)
    assert (plan.ops, plan.tag, plan.pip_packages) == ('cpu', 'cpu', ())
    note = plan.note
    assert "torch's CUDA 12.8" in note
    assert 'nvcc 13.0 at /opt/cuda-13.0/bin/nvcc' in note  # what was found
    assert 'nvidia-cuda-nvcc-cu12 holds only ptxas' in note  # why PyPI cannot help
    assert 'install CUDA toolkit 12.8' in note and 'CUDA_HOME' in note  # the fix
    assert 'torchvision' in note and 'CMAE_MM_MMCV_OPS=cpu' in note


def test_no_compiler_message_after_a_failed_pip_install():
    msg = no_compiler_message('13.0', (), 'pip install failed (no network)')
    assert 'found: no nvcc at all' in msg
    assert 'pip install failed (no network)' in msg
    assert 'install CUDA toolkit 13.0' in msg


def test_cpu_machine_and_cpu_choice_keep_the_cpu_key():
    plan = plan_build(
        BuildFacts(torch_cuda='13.0', gpus_present=False, compilers=(NVCC_13_0, )))
    assert (plan.ops, plan.tag, plan.note) == ('cpu', 'cpu', '')
    chosen = plan_build(gpu_facts(compilers=(NVCC_13_0, ), ops_env='cpu'))
    assert (chosen.ops, chosen.tag) == ('cpu', 'cpu')
    assert 'CMAE_MM_MMCV_OPS=cpu' in chosen.note
    # the key of the wheel cached before GPU support existed
    assert cache_key('2.1.0', '2.14.1', 'cp311',
                     'cpu') == 'mmcv-2.1.0_torch-2.14.1_cp311_cpu'
    assert (cache_key(
        '2.1.0', '2.14.1', 'cp311',
        'cu130_sm80-90_ptx90') == 'mmcv-2.1.0_torch-2.14.1_cp311_cu130_sm80-90_ptx90')


def test_forced_cuda_ops_on_a_build_host_without_gpu():
    plan = plan_build(
        BuildFacts(
            torch_cuda='13.0',
            gpus_present=False,
            torch_arches=CU130_ARCHES,
            compilers=(NVCC_13_0, ),
            ops_env='cuda'))
    assert (plan.ops, plan.arch_list, plan.tag) == ('cuda', '8.0;9.0+PTX',
                                                    'cu130_sm80-90_ptx90')
    with pytest.raises(ValueError, match='CMAE_MM_MMCV_OPS'):
        plan_build(gpu_facts(ops_env='gpu'))


def test_cpu_only_torch_on_a_gpu_machine():
    plan = plan_build(gpu_facts(torch_cuda=None, compilers=(NVCC_13_0, )))
    assert plan.ops == 'cpu' and 'CPU-only build' in plan.note


def test_arch_list_default_covers_a100_h100_and_visible_gpus():
    assert resolve_arch_list(None, (), CU130_ARCHES) == '8.0;9.0+PTX'
    assert resolve_arch_list(None, ((8, 0), (9, 0)), CU130_ARCHES) == '8.0;9.0+PTX'
    # L40S (8.9), RTX A6000 (8.6) and B200 (10.0) are added
    assert (resolve_arch_list(None, ((8, 9), (8, 6), (10, 0)),
                              CU130_ARCHES) == '8.0;8.6;8.9;9.0;10.0+PTX')
    # a V100 (7.0) has no kernels in torch cu130 (and CUDA 13's nvcc dropped sm_70)
    assert resolve_arch_list(None, ((7, 0), ), CU130_ARCHES) == '8.0;9.0+PTX'
    # a GPU newer than torch's newest architecture is clamped to it
    assert resolve_arch_list(None, ((12, 1), ), CU130_ARCHES) == '8.0;9.0;12.0+PTX'


def test_arch_list_override_and_its_cache_tag():
    arch = resolve_arch_list('8.6 9.0', ((9, 0), ), CU130_ARCHES)
    assert arch == '8.6;9.0' and arch_tag(arch) == 'sm86-90'
    plan = plan_build(gpu_facts(compilers=(NVCC_13_0, ), arch_env='8.0;9.0a;10.0+PTX'))
    assert plan.arch_list == '8.0;9.0a;10.0+PTX'
    assert plan.tag == 'cu130_sm80-90a-100_ptx100'
    with pytest.raises(ValueError, match="'Hopper' is not an architecture number"):
        resolve_arch_list('8.0;Hopper', (), CU130_ARCHES)


def test_arch_runs_on():
    assert arch_runs_on('sm_86', (8, 9))  # SASS: same major, higher minor
    assert not arch_runs_on('sm_80', (7, 0))
    assert not arch_runs_on('sm_90', (10, 0))
    assert arch_runs_on('compute_90', (10, 0))  # PTX: any newer GPU (JIT)
    assert arch_runs_on('9.0+PTX', (12, 0))
    assert arch_runs_on('sm_90a', (9, 0)) and not arch_runs_on('sm_90a', (10, 0))
    assert arch_runs_on('sm_100', (10, 3)) and not arch_runs_on('sm_100', (9, 0))


def _fake_nvcc(path: str, release: str) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('#!/bin/sh\necho "Cuda compilation tools, release '
                f'{release}, V{release}.88"\n')
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


def test_make_cuda_home_merges_pypi_roots(tmp_path):
    """The layout NVIDIA's CUDA 13 wheels give (site-packages/nvidia/cu13/...), split
    over two roots as in a venv where torch's libraries came first."""
    compiler, libs = tmp_path / 'nvcc_pkg', tmp_path / 'torch_libs'
    _fake_nvcc(str(compiler / 'bin' / 'nvcc'), '13.0')
    for root, files in ((compiler,
                         ('include/cuda_runtime.h', 'include/cccl/cub/cub.cuh',
                          'lib/libcudart.so.13', 'nvvm/bin/cicc')),
                        (libs, ('include/cublas_v2.h', 'include/cuda_runtime.h',
                                'lib/libcublas.so.13'))):
        for rel in files:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(f'{root.name}/{rel}')
    home = make_cuda_home(str(tmp_path / 'cuda-13.0'), [str(compiler), str(libs)])
    assert nvcc_version(osp.join(home, 'bin', 'nvcc')) == '13.0'
    assert open(osp.join(home, 'include', 'cublas_v2.h')).read() == \
        'torch_libs/include/cublas_v2.h'
    # the first root wins a name both hold
    assert open(osp.join(home, 'include', 'cuda_runtime.h')).read() == \
        'nvcc_pkg/include/cuda_runtime.h'
    assert osp.isfile(osp.join(home, 'include', 'cccl', 'cub', 'cub.cuh'))
    assert osp.isfile(osp.join(home, 'nvvm', 'bin', 'cicc'))
    assert os.readlink(osp.join(home, 'lib64', 'libcudart.so')) == 'libcudart.so.13'
    assert open(osp.join(home, 'lib64', 'libcudart.so')).read() == \
        'nvcc_pkg/lib/libcudart.so.13'
    # idempotent: made again over itself
    assert make_cuda_home(home, [str(compiler), str(libs)]) == home
    assert not osp.exists(home + '.partial')

    # the made home is found as $CUDA_HOME, with its version, once (no duplicates)
    found = find_compilers({
        'CUDA_HOME': home,
        'CUDA_PATH': home,
        'PATH': ''
    }, str(tmp_path / 'no_venv'), '13.0')
    assert found[0] == Nvcc(osp.join(home, 'bin', 'nvcc'), '13.0', '$CUDA_HOME', home)
    assert sum(f.path.startswith(home) for f in found) == 1


def test_installed_cpu_mmcv_is_not_accepted_for_cuda():
    """This machine's MMCV was built without CUDA ops: it is fine for a CPU run and
    reported as lacking ops for torch's CUDA (what makes setup_env.sh rebuild it on a
    GPU machine)."""
    from mmcv import _ext
    if _ext.get_compiling_cuda_version() != 'not available':
        pytest.skip('this MMCV has CUDA ops')
    assert mmcv_ops_problem(None) is None
    problem = mmcv_ops_problem('13.0')
    assert "ops compiled for CUDA 'not available', torch uses CUDA 13.0" in problem


def test_setup_env_script_parses(repo_root):
    proc = subprocess.run(
        ['bash', '-n', osp.join(repo_root, 'tools', 'setup_env.sh')],
        capture_output=True,
        text=True)
    assert proc.returncode == 0, proc.stderr


def _plan(repo_root: str, env: dict) -> dict:
    proc = subprocess.run([
        sys.executable, '-I',
        osp.join(repo_root, 'cmae_mm/engine/cuda_env.py'), 'plan', '2.1.0'
    ],
                          capture_output=True,
                          text=True,
                          env=env,
                          timeout=300,
                          check=True)
    return {
        k: (shlex.split(v) or [''])[0]
        for k, v in (line.split('=', 1) for line in proc.stdout.splitlines())
    }


@pytest.mark.e2e
def test_plan_command_as_setup_env_runs_it(repo_root, run_env):
    """``python -I cuda_env.py plan`` on this GPU-less machine: the CPU key of the
    cached wheel; with CMAE_MM_MMCV_OPS=cuda a CUDA plan for A100 + H100."""
    if torch.cuda.is_available():
        pytest.skip('simulates a machine without GPU')
    torch_version = torch.__version__.split('+')[0]
    py_tag = 'cp{}{}'.format(*sys.version_info[:2])
    env = {k: v for k, v in run_env.items() if k != 'TORCH_CUDA_ARCH_LIST'}
    cpu = _plan(repo_root, dict(env, CMAE_MM_MMCV_OPS=''))
    if not osp.isdir('/proc/driver/nvidia/gpus'):
        assert cpu['MMCV_OPS'] == 'cpu'
        assert cpu['MMCV_KEY'] == f'mmcv-2.1.0_torch-{torch_version}_{py_tag}_cpu'
    assert cpu['MMCV_CPU_KEY'] == f'mmcv-2.1.0_torch-{torch_version}_{py_tag}_cpu'
    cuda = _plan(repo_root, dict(env, CMAE_MM_MMCV_OPS='cuda'))
    assert cuda['MMCV_OPS'] == 'cuda' and cuda['ARCH_LIST'] == '8.0;9.0+PTX'
    tag = 'cu{}_sm80-90_ptx90'.format(torch.version.cuda.replace('.', ''))
    assert cuda['MMCV_KEY'] == f'mmcv-2.1.0_torch-{torch_version}_{py_tag}_{tag}'
    # a matching toolkit found here, or NVIDIA's PyPI packages to install
    assert bool(cuda['BUILD_CUDA_HOME']) != bool(cuda['PIP_CUDA_PACKAGES'])
    if cuda['BUILD_CUDA_HOME']:
        nvcc = osp.join(cuda['BUILD_CUDA_HOME'], 'bin', 'nvcc')
        assert re.search(
            r'release (\d+\.\d+)',
            subprocess.run([nvcc, '--version'], capture_output=True,
                           text=True).stdout).group(1) == torch.version.cuda
