"""Make one config run on GPUs (NCCL) and on CPUs (gloo) without editing it.

MMEngine 0.10.7 assumes CUDA in distributed runs: ``init_dist`` calls
``torch.cuda.set_device`` and the default DDP wrapper passes
``device_ids=[LOCAL_RANK]``.
On a machine without a GPU, ``prepare_launch`` initialises the process group with gloo
itself (MMEngine then skips its own ``init_dist``) and wraps the model in
:class:`CPUDistributedDataParallel`, and glibc malloc keeps freed memory for the next
step (:mod:`cmae_mm.engine.cpu_allocator`). With a GPU nothing is changed.
A run meant for GPUs on which CUDA is unusable stops first, naming cause and fix
(:mod:`cmae_mm.engine.cuda_check`).
"""
import os
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS

from .cpu_allocator import keep_freed_memory
from .cuda_check import check_cuda
from .frameworks import OPTIONAL_FRAMEWORKS, framework_import_error, install_hint


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for CPU processes (gloo).

    PyTorch's ``SyncBatchNorm`` runs only on GPUs, so its layers are turned back into
    ``BatchNorm`` here, which normalises over each process's own batch; this is logged.
    """

    def __init__(self, module: torch.nn.Module, **kwargs) -> None:
        has_sync_bn = any(
            isinstance(m, torch.nn.SyncBatchNorm) for m in module.modules())
        if has_sync_bn:
            print_log(
                'CPU distributed run: SyncBatchNorm layers became BatchNorm '
                '(per-process statistics); SyncBN needs GPUs.',
                logger='current',
                level=30)
            module = revert_sync_batchnorm(module)
        kwargs['device_ids'] = None
        super().__init__(module=module, **kwargs)


def _init_cpu_process_group(launcher: str, backend: str) -> None:
    if launcher == 'slurm':
        os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
        os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
        os.environ.setdefault('LOCAL_RANK', os.environ['SLURM_LOCALID'])
        os.environ.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in os.environ:
            import subprocess
            nodes = os.environ['SLURM_NODELIST']
            os.environ['MASTER_ADDR'] = subprocess.getoutput(
                f'scontrol show hostname {nodes} | head -n1')
    elif launcher == 'mpi':
        os.environ.setdefault('RANK', os.environ['OMPI_COMM_WORLD_RANK'])
        os.environ.setdefault('WORLD_SIZE', os.environ['OMPI_COMM_WORLD_SIZE'])
        os.environ.setdefault('LOCAL_RANK', os.environ['OMPI_COMM_WORLD_LOCAL_RANK'])
    missing = [
        k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
        if k not in os.environ
    ]
    if missing:
        raise RuntimeError(
            f'--launcher {launcher} needs the environment variables {missing}; start '
            f'the run with tools/dist_train.sh (torchrun) or tools/slurm_train.sh.')
    torch_dist.init_process_group(
        backend=backend,
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']))


def check_framework(cfg: Config) -> None:
    """Fail early, naming the extra to install, when the config's framework is missing.

    The frameworks are those of :data:`~cmae_mm.engine.frameworks.OPTIONAL_FRAMEWORKS`.
    Without this, MMEngine falls back to its root registry and the first model type
    fails with "... is not in the mmengine::model registry".
    """
    scope = cfg.get('default_scope')
    if scope not in OPTIONAL_FRAMEWORKS:
        return
    error = framework_import_error(scope)
    if error is not None:
        raise ImportError(
            f'This is an {OPTIONAL_FRAMEWORKS[scope].title} config '
            f'(default_scope={scope!r}) but {scope} cannot be imported '
            f'({type(error).__name__}: {error}). {install_hint(scope)}') from error


def use_cpu_device() -> None:
    """Make MMEngine place models and data on the CPU although CUDA is usable.

    MMEngine picks its device once, at import (``mmengine.device.utils.DEVICE``, read
    by ``get_device()``); hiding the GPUs with ``CUDA_VISIBLE_DEVICES=`` before the
    start does the same for every library.
    """
    import mmengine.device.utils as device_utils
    device_utils.DEVICE = 'cpu'
    print_log(
        f'--device cpu: running on the CPUs although CUDA sees '
        f'{torch.cuda.device_count()} GPU(s).',
        logger='current',
        level=30)


def prepare_launch(cfg: Config, launcher: str, device: Optional[str] = None) -> Config:
    """Adapt ``cfg`` to the launcher and the hardware; returns ``cfg``.

    Also checks that the config's framework can be imported (:func:`check_framework`)
    and that a run meant for GPUs can use them (``device``: ``'auto'``, ``'cuda'``,
    ``'cpu'``; None: ``$CMAE_MM_DEVICE`` or ``'auto'``; see
    :func:`cmae_mm.engine.cuda_check.check_cuda`), raising
    :class:`~cmae_mm.engine.cuda_check.CudaUnusableError` before anything is built.
    """
    check_framework(cfg)
    facts = check_cuda(device)
    on_cuda = facts.device != 'cpu' and torch.cuda.is_available()
    if facts.device == 'cpu' and torch.cuda.is_available():
        use_cpu_device()
    cfg.launcher = launcher
    if cfg.get('default_scope') == 'mmdet':
        # NMS / RoIAlign without MMCV CUDA (or bfloat16) kernels: torchvision's
        from ..transfer.det.ops_fallback import prepare_detection_ops
        prepare_detection_ops(cfg, 'cuda' if on_cuda else 'cpu')
    if not on_cuda:
        keep_freed_memory()  # no page fault per large tensor (cpu_allocator.py)
    if launcher == 'none' or on_cuda:
        return cfg
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'
    if not torch_dist.is_initialized():
        _init_cpu_process_group(launcher, dist_cfg['backend'])
    wrapper = cfg.get('model_wrapper_cfg') or {}
    if wrapper.get('type',
                   'MMDistributedDataParallel') in ('MMDistributedDataParallel',
                                                    'CPUDistributedDataParallel'):
        wrapper['type'] = 'CPUDistributedDataParallel'
        wrapper.setdefault('broadcast_buffers', False)
        wrapper.setdefault('find_unused_parameters',
                           cfg.get('find_unused_parameters', False))
        cfg.model_wrapper_cfg = wrapper
    return cfg


def finish_launch() -> None:
    """Destroy the process group at the end of a run, while the interpreter is alive.

    A gloo group left to interpreter shutdown can abort a rank after a run that
    succeeded ("terminate called without an active exception", SIGABRT; PyTorch issue
    #190489), which fails the whole ``torchrun`` job.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
