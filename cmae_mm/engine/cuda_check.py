"""Stop a run meant for GPUs at launch when CUDA is unusable, naming cause and fix.

Without this, ``torch.cuda.is_available() == False`` (a driver too old for torch's CUDA,
a GPU without kernels in this torch build, no device visible) makes
:func:`cmae_mm.engine.launch.prepare_launch` train on the CPUs with gloo.

A run is *meant for GPUs* when ``--device cuda`` / ``CMAE_MM_DEVICE=cuda`` says so, or
(``auto``, the default) when NVIDIA GPUs are present (``/proc/driver/nvidia/gpus``,
``/dev/nvidia<N>``, ``nvidia-smi -L``), Slurm allocated GPUs (:data:`SLURM_GPU_VARS`)
or ``CUDA_VISIBLE_DEVICES`` names devices. ``CUDA_VISIBLE_DEVICES`` set to ``''`` or
``-1`` means a CPU run in ``auto`` mode; ``--device cpu`` skips the check.
:func:`probe_cuda` collects :class:`CudaFacts`; :func:`diagnose` is pure.
"""
import os
import warnings
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .cuda_env import (MIN_DRIVER, Capability, arch_runs_on, driver_version,
                       major_minor, nvidia_gpus, smi_gpus)

DEVICES = ('auto', 'cuda', 'cpu')
#: Environment variables through which Slurm (and its GRES plugin) hands out GPUs.
SLURM_GPU_VARS = ('SLURM_GPUS', 'SLURM_GPUS_ON_NODE', 'SLURM_GPUS_PER_NODE',
                  'SLURM_GPUS_PER_TASK', 'SLURM_JOB_GPUS', 'SLURM_STEP_GPUS',
                  'GPU_DEVICE_ORDINAL')
_CPU_FIX = 'or run on the CPUs on purpose with --device cpu (CMAE_MM_DEVICE=cpu)'


class CudaUnusableError(SystemExit):
    """A run meant for GPUs found CUDA unusable; the message names cause and fix.

    A ``SystemExit``: the tools print the message and exit with status 1, no
    traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class CudaFacts:
    """What decides whether a GPU run can start here."""
    device: str = 'auto'  # requested: 'auto', 'cuda' or 'cpu'
    gpu_reasons: Tuple[str, ...] = ()  # why a GPU run is meant ('/dev/nvidia0', ...)
    visible_devices: Optional[str] = None  # $CUDA_VISIBLE_DEVICES (None: unset)
    torch_version: str = ''
    torch_cuda: Optional[str] = None  # torch.version.cuda; None: CPU-only torch
    cuda_available: bool = False  # torch.cuda.is_available()
    driver: Optional[str] = None  # NVIDIA driver version, '580.65.06'
    gpus: Tuple[str, ...] = ()  # the GPUs the driver lists
    names: Tuple[str, ...] = ()  # name of each GPU (torch, else nvidia-smi)
    capabilities: Tuple[Capability, ...] = ()  # compute capability of each GPU
    arch_list: Tuple[str, ...] = ()  # torch.cuda.get_arch_list()
    torch_error: str = ''  # torch's CUDA initialisation warning, if any


def requested_device(flag: Optional[str] = None,
                     env: Optional[Dict[str, str]] = None) -> str:
    """``--device`` if given, else ``$CMAE_MM_DEVICE``, else ``'auto'`` (validated)."""
    env = os.environ if env is None else env
    device = (flag or env.get('CMAE_MM_DEVICE') or 'auto').strip().lower()
    if device not in DEVICES:
        raise ValueError(f'device {device!r} (from --device or CMAE_MM_DEVICE): use '
                         f'one of {", ".join(DEVICES)}.')
    return device


def hides_all_gpus(visible_devices: Optional[str]) -> bool:
    """``CUDA_VISIBLE_DEVICES`` of ``''`` or ``-1``: no GPU, a CPU run on purpose."""
    return visible_devices is not None and visible_devices.strip() in ('', '-1')


def gpu_reasons(env: Dict[str, str], gpus: Tuple[str, ...]) -> Tuple[str, ...]:
    """Why this run is meant for GPUs (empty: it is not)."""
    visible = env.get('CUDA_VISIBLE_DEVICES')
    if hides_all_gpus(visible):
        return ()
    reasons = []
    if visible is not None:
        reasons.append(f'CUDA_VISIBLE_DEVICES={visible}')
    for var in SLURM_GPU_VARS:
        value = env.get(var, '').strip()
        if value and value not in ('0', 'N/A'):
            reasons.append(f'{var}={value}')
    if gpus:
        reasons.append(f'{len(gpus)} NVIDIA GPU(s) present ({gpus[0]}'
                       f'{", ..." if len(gpus) > 1 else ""})')
    return tuple(reasons)


def probe_cuda(device: Optional[str] = None,
               env: Optional[Dict[str, str]] = None) -> CudaFacts:
    """Collect :class:`CudaFacts` here (cheap: no nvidia-smi where there is none)."""
    import torch
    env = dict(os.environ if env is None else env)
    device = requested_device(device, env)
    if device == 'cpu':
        return CudaFacts(device='cpu', torch_version=torch.__version__)
    gpus = tuple(nvidia_gpus())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        available = torch.cuda.is_available()
    torch_error = ' '.join(
        str(w.message).strip() for w in caught if 'CUDA' in str(w.message))
    if available:
        count = torch.cuda.device_count()
        names = tuple(torch.cuda.get_device_name(i) for i in range(count))
        caps = tuple(torch.cuda.get_device_capability(i) for i in range(count))
    else:
        named = smi_gpus() if gpus else []
        names = tuple(n for n, _ in named)
        caps = tuple(c for _, c in named)
    return CudaFacts(
        device=device,
        gpu_reasons=gpu_reasons(env, gpus),
        visible_devices=env.get('CUDA_VISIBLE_DEVICES'),
        torch_version=torch.__version__,
        torch_cuda=torch.version.cuda,
        cuda_available=available,
        driver=driver_version() if gpus else None,
        gpus=gpus,
        names=names,
        capabilities=caps,
        arch_list=tuple(torch.cuda.get_arch_list()) if torch.version.cuda else (),
        torch_error=torch_error)


def _driver_too_old(facts: CudaFacts) -> Optional[str]:
    major = (major_minor(facts.torch_cuda) or (0, 0))[0]
    need = MIN_DRIVER.get(major)
    have = major_minor(facts.driver)
    if need is None or have is None or have[0] >= int(need):
        return None
    return (f'the NVIDIA driver {facts.driver} is too old for torch '
            f'{facts.torch_version} (CUDA {facts.torch_cuda}), which needs driver >= '
            f'{need} on Linux (NVIDIA CUDA Compatibility guide, minor version '
            f'compatibility). Fix: upgrade the node\'s driver to >= {need} (ask the '
            f'cluster admins, or choose a partition with newer drivers), or install '
            f'a torch built for an older CUDA that this driver supports, {_CPU_FIX}.')


def _unsupported_arch(facts: CudaFacts) -> Optional[str]:
    if not facts.arch_list:
        return None
    for i, cap in enumerate(facts.capabilities):
        if any(arch_runs_on(code, cap) for code in facts.arch_list):
            continue
        name = facts.names[i] if i < len(facts.names) else f'GPU {i}'
        return (f'GPU {i} ({name}) has compute capability {cap[0]}.{cap[1]} '
                f'(sm_{cap[0]}{cap[1]}), and torch {facts.torch_version} has kernels '
                f'only for {" ".join(facts.arch_list)}: no kernel would run on it. '
                f'Fix: run on GPUs of a listed architecture (another partition, or '
                f'CUDA_VISIBLE_DEVICES selecting only such GPUs), or install a torch '
                f'build with kernels for sm_{cap[0]}{cap[1]}, {_CPU_FIX}.')
    return None


def diagnose(facts: CudaFacts) -> Optional[str]:
    """Why a run meant for GPUs cannot use them (cause and fix); None: go ahead."""
    if facts.device == 'cpu':
        return None
    if facts.device == 'auto' and not facts.gpu_reasons:
        return None
    why = ('--device cuda' if facts.device == 'cuda' else
           'this run is meant for GPUs (' + ', '.join(facts.gpu_reasons) + ')')
    head = f'CUDA is unusable, and {why}: '
    if facts.cuda_available:
        problem = _unsupported_arch(facts)
        return head + problem if problem else None
    if facts.torch_cuda is None:
        return head + (
            f'torch {facts.torch_version} is a CPU-only build (torch.version.cuda is '
            f'None). Fix: install the CUDA build pinned in requirements/'
            f'constraints.txt (bash tools/setup_env.sh --force), {_CPU_FIX}.')
    if not facts.gpus:
        hidden = (f' (and CUDA_VISIBLE_DEVICES={facts.visible_devices!r} would hide '
                  f'any)' if hides_all_gpus(facts.visible_devices) else '')
        return head + (
            f'no device is visible: the NVIDIA driver lists no GPU here (no '
            f'/proc/driver/nvidia/gpus/*, no /dev/nvidia<N>, no nvidia-smi listing)'
            f'{hidden}. Fix: run on a GPU node (Slurm: request GPUs with --gres=gpu:N '
            f'or --gpus=N; a container: expose the GPUs, e.g. docker run --gpus all), '
            f'{_CPU_FIX}.')
    if hides_all_gpus(facts.visible_devices):
        return head + (
            f'no device is visible: CUDA_VISIBLE_DEVICES={facts.visible_devices!r} '
            f'hides all {len(facts.gpus)} GPU(s). Fix: unset CUDA_VISIBLE_DEVICES or '
            f'set it to GPU indices (0,1,...), {_CPU_FIX}.')
    problem = _driver_too_old(facts) or _unsupported_arch(facts)
    if problem:
        return head + problem
    if facts.visible_devices is not None:
        return head + (
            f'no device is visible: CUDA_VISIBLE_DEVICES={facts.visible_devices!r} '
            f'selects none of the {len(facts.gpus)} GPU(s) the driver lists, or they '
            f'are unusable{": " + facts.torch_error if facts.torch_error else ""}. '
            f'Fix: set CUDA_VISIBLE_DEVICES to existing indices (nvidia-smi -L) or '
            f'unset it, {_CPU_FIX}.')
    return head + (
        f'torch.cuda.is_available() is False although the driver '
        f'{facts.driver or "(version unknown)"} lists {len(facts.gpus)} GPU(s)'
        f'{": " + facts.torch_error if facts.torch_error else ""}. Fix: check '
        f'nvidia-smi (a GPU in a bad state, a missing /dev/nvidia-uvm, a container '
        f'without GPU access), {_CPU_FIX}.')


def check_cuda(device: Optional[str] = None) -> CudaFacts:
    """Probe and raise :class:`CudaUnusableError` when :func:`diagnose` finds a
    problem; returns the facts otherwise."""
    facts = probe_cuda(device)
    problem = diagnose(facts)
    if problem:
        raise CudaUnusableError(problem)
    return facts


__all__ = [
    'CudaFacts', 'CudaUnusableError', 'DEVICES', 'SLURM_GPU_VARS', 'check_cuda',
    'diagnose', 'gpu_reasons', 'hides_all_gpus', 'probe_cuda', 'requested_device'
]
