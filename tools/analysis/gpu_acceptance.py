"""Check, in minutes, everything a first training run on this machine needs.

    python tools/analysis/gpu_acceptance.py [--device cuda|cpu] [--stages NAME ...]
        [--out FILE.md] [--work-dir DIR] [--budget SECONDS] [--batch N]

Stages (``--stages``; default all, in this order):

- ``env``: torch and its CUDA, the driver, the GPU (name, compute capability,
  memory), the architectures torch has kernels for, NCCL, a matrix product on the
  device; MMCV and whether its CUDA ops work (``mmcv.ops.get_compiling_cuda_version``,
  MMCV's own NMS kernel run on the GPU), else the torchvision fallback of
  ``cmae_mm/transfer/det/ops_fallback.py``, checked on the device against MMCV.
- ``train_step`` = ``cmae_fp16``, ``cmae_bf16``, ``conmim_fp16``, ``conmim_bf16``:
  training steps of the CMAE ViT-B and ConMIM ViT-B ImageNet recipes through
  ``tools/analysis/benchmark_pretrain.py`` (its numbers, one process per row): the
  config's ``MixedPrecisionOptimWrapper`` set to float16 (autocast + ``GradScaler``)
  or bfloat16 by ``set_precision`` as ``tools/train.py --precision fp16 / bf16``;
  images/s, MFU against a matrix product in the same dtype measured in the same
  process, peak memory, the loss and the loss scale.
- ``augment``: the tests of the device-side augmentation
  (``tests/test_view_augments.py``, ``tests/test_device_augmentation.py``, without
  the end-to-end runs); on a GPU their CUDA tests must run (none skipped): every
  operation and the whole ``MultiViewDataPreprocessor`` with synchronising CUDA calls
  made errors, the results equal to the CPU's.
- ``dist_resume``: ``tools/dist_train.sh`` with one process (NCCL on a GPU, gloo on
  a CPU) of the tiny CMAE config on a folder of photographs: 4 iterations with
  checkpoints at 2 and 4, then ``--resume`` of ``iter_2.pth`` to iteration 6; the
  resumed run must start at iteration 2.
- ``seg`` / ``det``: 10 iterations of the UperNet (ADE20K) and ViTDet Mask R-CNN
  (COCO) recipes through ``tools/train.py``, shrunk by ``cmae_mm.testing``'s
  ``--cfg-options`` to a tiny ViT on tiny on-disk datasets, from a tiny CMAE
  checkpoint; a validation at the end (mIoU, COCO mAP).
- ``knn``: ``tools/analysis/knn_eval.py`` of that checkpoint on a tiny ImageNet.

``--device cpu`` runs the same stages at tiny size (the tiny CMAE / ConMIM demo
configs in ``train_step``, gloo instead of NCCL), so the tool is known to work before
a GPU is at hand. Every stage runs on its own (an exception or a failed subprocess
gives ``FAIL`` and the error's line, and the next stage runs); subprocesses are
bounded by per-stage limits and by ``--budget`` seconds in all (a stage left without
time is ``skipped``). Nothing is downloaded: the data are written from the
photographs bundled with scikit-image (``cmae_mm.testing``). Prints a Markdown table
(stage | status | key numbers | seconds); ``--out FILE.md`` also writes it there and
the rows as JSON to ``FILE.json``. Exit status 0 only if every selected stage passed.
Logs and data stay in ``--work-dir`` (default: a temporary folder, kept and named
when a stage failed).
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Callable, Dict, List, Optional

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = 'tools/analysis/gpu_acceptance.py'
CMAE_TINY = 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py'
#: model -> config of the ``train_step`` stages, per device
STEP_CONFIGS = {
    'cuda': {
        'cmae': 'configs/pretrain/cmae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py',
        'conmim': 'configs/pretrain/conmim_vit-base-p16_8xb256-amp-coslr-800e_in1k.py'
    },
    'cpu': {
        'cmae': CMAE_TINY,
        'conmim': 'configs/pretrain/conmim_vit-tiny-p16_1xb8-20e_demo.py'
    },
}
#: benchmark_pretrain.py settings of the ``train_step`` stages, per device
STEP_SETTINGS = {
    'cuda': dict(batch=64, iters=5, warmup=3, peak_size=8192),
    'cpu': dict(batch=2, iters=2, warmup=1, peak_size=512),
}
PRECISION_DTYPES = {'fp16': 'float16', 'bf16': 'bfloat16'}
#: seconds a stage's subprocesses may run, per device (the budget caps them too)
LIMITS = {
    'cuda': dict(step=120, augment=120, dist=120, seg=150, det=180, knn=120, ckpt=120),
    'cpu': dict(step=240, augment=240, dist=240, seg=300, det=420, knn=240, ckpt=240),
}
TRANSFER_ITERS = 10
#: MMEngine's Runner.resume log line
RESUMED = re.compile(r'resumed epoch: (\d+), iter: (\d+)')
TRAIN_ITER = re.compile(r'Iter\(train\) \[\s*(\d+)/(\d+)\]')
LOSS = re.compile(r'\bloss: (\S+?)(?:\s|$)')
ERROR_LINE = re.compile(r'^[\w.]*(Error|Exception|Exit|Interrupt|Expired)\b.*')


class StageError(Exception):
    """A stage's check failed; the message is the table's error line."""


class Context:
    """What the stages share: device, work dir, subprocess environment, deadline,
    and the data and checkpoint made once and reused by later stages."""

    def __init__(self, device: str, work_dir: str, budget: float,
                 batch: Optional[int]) -> None:
        self.device = device
        self.work_dir = work_dir
        self.deadline = time.time() + budget
        self.budget = budget
        self.batch = batch
        self.limits = LIMITS[device]
        self.env = dict(os.environ)
        self.env['PYTHONPATH'] = REPO_ROOT + os.pathsep + self.env.get('PYTHONPATH', '')
        self.env['PYTHON'] = sys.executable  # tools/dist_train.sh's interpreter
        self.env['CMAE_MM_DEVICE'] = device  # tools/train.py --device (cuda_check.py)
        if device == 'cpu':
            self.env['CUDA_VISIBLE_DEVICES'] = ''
        self._photos = None
        self.checkpoint = None  # a tiny CMAE checkpoint, once one was made

    def path(self, *parts: str) -> str:
        path = osp.join(self.work_dir, *parts)
        os.makedirs(osp.dirname(path), exist_ok=True)
        return path

    def remaining(self) -> float:
        return self.deadline - time.time()

    def run(self,
            name: str,
            args: List[str],
            limit: float,
            env: Optional[Dict[str, str]] = None) -> str:
        """Run ``args`` (``cmae_mm.testing.run_subprocess``: a ``.py`` runs with this
        interpreter) in the repository, in its own process group, for at most
        ``limit`` seconds and what is left of the budget; the output goes to
        ``logs/<name>.log``. Returns stdout + stderr; raises :class:`StageError` with
        the error's line on a non-zero exit or a timeout."""
        from cmae_mm.testing import run_subprocess
        timeout = min(limit, self.remaining())
        if timeout < 5:
            raise StageError(f'no time left of the {self.budget:.0f} s budget '
                             f'(--budget) to run {name}')
        log = self.path('logs', f'{name}.log')
        try:
            proc, _ = run_subprocess(
                args,
                dict(self.env, **(env or {})),
                REPO_ROOT,
                timeout=timeout,
                check=False,
                new_session=True)
        except subprocess.TimeoutExpired as exc:
            _write_log(log, args, _text(exc.stdout) + _text(exc.stderr))
            why = 'the stage limit' if timeout == limit else 'the --budget'
            raise StageError(f'{name} timed out after {timeout:.0f} s ({why}); '
                             f'log: {log}')
        text = proc.stdout + proc.stderr
        _write_log(log, args, text)
        if proc.returncode != 0:
            raise StageError(f'{name} exited with {proc.returncode}: '
                             f'{error_line(text)} (log: {log})')
        return text

    def photos(self) -> str:
        """A folder of the bundled photographs as JPEGs (the demo configs' data)."""
        if self._photos is None:
            from cmae_mm.testing import write_photo_folder
            self._photos = self.path('data', 'photos', '')
            write_photo_folder(self._photos)
        return self._photos

    def tiny_checkpoint(self) -> str:
        """A tiny CMAE pretraining checkpoint: ``dist_resume``'s last one, or 2
        iterations of ``tools/train.py`` on the tiny config (as tests/conftest.py)."""
        if self.checkpoint is None:
            work = self.path('tiny_ckpt', '')
            self.run('tiny_checkpoint', [
                'tools/train.py', CMAE_TINY, '--work-dir', work, '--cfg-options',
                f'train_dataloader.dataset.data_root={self.photos()}',
                'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2'
            ], self.limits['ckpt'])
            self.checkpoint = osp.join(work, 'iter_2.pth')
        return self.checkpoint


def _text(out) -> str:
    if out is None:
        return ''
    return out.decode(errors='replace') if isinstance(out, bytes) else out


def _write_log(log: str, args: List[str], text: str) -> None:
    with open(log, 'a') as f:
        f.write(f'$ {" ".join(map(str, args))}\n{text}\n')


def error_line(text: str) -> str:
    """The last exception line (``SomeError: message``) of ``text``, else its last
    non-empty line; at most 240 characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if ERROR_LINE.match(line):
            return line[:240]
    return (lines[-1] if lines else '(no output)')[:240]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def train_losses(text: str) -> List[float]:
    """The ``loss`` of every logged training iteration, in order."""
    return [
        float(m.group(1)) for line in text.splitlines() if TRAIN_ITER.search(line)
        for m in [LOSS.search(line)] if m
    ]


def check_losses(text: str, iters: int) -> List[float]:
    losses = train_losses(text)
    if len(losses) != iters:
        raise StageError(f'{len(losses)} logged training losses, expected {iters}')
    if not all(math.isfinite(v) for v in losses):
        raise StageError(f'non-finite training loss: {losses}')
    return losses


def bench_module():
    """``tools/analysis/benchmark_pretrain.py`` as a module."""
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    import benchmark_pretrain
    return benchmark_pretrain


# ------------------------------------------------------------------- stages
def stage_env(ctx: Context) -> dict:
    """Versions, the device, and the detection ops (MMCV's or the fallback)."""
    import mmcv
    import torch
    import torchvision
    from mmcv.ops import get_compiling_cuda_version
    numbers = dict(
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        torchvision=torchvision.__version__,
        mmcv=mmcv.__version__,
        mmcv_compiled_cuda=get_compiling_cuda_version())
    if ctx.device == 'cuda':
        numbers.update(cuda_facts())
        summary = (f'{numbers["gpu"]} x{numbers["gpus"]} (sm_'
                   f'{numbers["capability"].replace(".", "")}, '
                   f'{numbers["gpu_memory_gib"]:.0f} GiB), driver '
                   f'{numbers["driver"]}, torch {numbers["torch"]} CUDA '
                   f'{numbers["torch_cuda"]}, NCCL {numbers["nccl"]}')
    else:
        numbers.update(
            cpu=bench_module().device_name('cpu'),
            threads=torch.get_num_threads(),
            gloo=torch.distributed.is_gloo_available())
        if not numbers['gloo']:
            raise StageError('torch has no gloo backend: no CPU distributed run')
        summary = (f'{numbers["cpu"]}, {numbers["threads"]} threads, torch '
                   f'{numbers["torch"]} (CUDA {numbers["torch_cuda"]}), gloo')
    numbers.update(detection_ops(ctx.device))
    summary += (f'; MMCV {numbers["mmcv"]} (CUDA ops: '
                f'{numbers["mmcv_compiled_cuda"]}); detection ops: '
                f'{numbers["detection_ops"]}')
    return dict(summary=summary, numbers=numbers)


def cuda_facts() -> dict:
    """The GPU, the driver, torch's kernels for it (the launch check of
    ``cmae_mm/engine/cuda_check.py``), NCCL, MMCV's CUDA version against torch's; a
    matrix product on the GPU against the CPU's."""
    import torch

    from cmae_mm.engine.cuda_check import diagnose, probe_cuda
    from cmae_mm.engine.cuda_env import mmcv_ops_problem
    facts = probe_cuda('cuda')
    problem = diagnose(facts)
    if problem:
        raise StageError(problem)
    props = torch.cuda.get_device_properties(0)
    major, minor = facts.capabilities[0]
    out = dict(
        gpu=props.name,
        gpus=len(facts.names),
        capability=f'{major}.{minor}',
        gpu_memory_gib=props.total_memory / 2**30,
        arch_list=list(facts.arch_list),
        driver=facts.driver,
        nccl='.'.join(map(str, torch.cuda.nccl.version())),
        bf16=torch.cuda.is_bf16_supported(),
        mmcv_cuda_problem=mmcv_ops_problem(facts.torch_cuda))
    a = torch.randn(1024, 1024, device='cuda')
    err = (a @ a).cpu() - a.cpu() @ a.cpu()
    out['matmul_max_abs_err'] = float(err.abs().max())
    if not out['matmul_max_abs_err'] < 1.0:  # TF32 off by default: ~1e-4
        raise StageError(f'a 1024^2 float32 matmul on {props.name} differs from the '
                         f'CPU by {out["matmul_max_abs_err"]:.3g}')
    return out


def detection_ops(device: str) -> dict:
    """Which NMS / RoIAlign a detection run on ``device`` uses, checked on it: MMCV's
    kernels, and the torchvision fallback against them (or alone on a GPU whose
    MMCV has no CUDA ops)."""
    import torch
    from mmcv.ops import nms, roi_align

    from cmae_mm.transfer.det.ops_fallback import mmcv_cuda_ops_status, torchvision_ops
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=gen) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(200, 2, generator=gen) * 40], 1)
    scores = torch.rand(200, generator=gen)
    feats = torch.randn(2, 8, 32, 32, generator=gen)
    rois = torch.cat(
        [torch.randint(0, 2, (50, 1), generator=gen).float(), boxes[:50] / 4], 1)
    boxes, scores, feats, rois = (t.to(device) for t in (boxes, scores, feats, rois))

    def run():
        _, keep = nms(boxes, scores, 0.5)
        return keep.cpu(), roi_align(feats, rois, (7, 7), 1.0, 0, 'avg', True).cpu()

    if device == 'cuda':
        usable, reason = mmcv_cuda_ops_status()
    else:
        usable, reason = True, "MMCV's CPU kernels"
    with torchvision_ops(force=True):
        keep_tv, roi_tv = run()
    out = dict(mmcv_ops_reason=reason)
    if not usable:
        out['detection_ops'] = f'torchvision fallback ({reason})'
        return out
    keep, roi = run()
    if not torch.equal(keep, keep_tv):
        raise StageError(f'NMS on {device}: the torchvision fallback keeps '
                         f'{len(keep_tv)} boxes, MMCV {len(keep)}')
    roi_err = float((roi - roi_tv).abs().max())
    if roi_err > 1e-4:
        raise StageError(f'RoIAlign on {device}: fallback differs from MMCV by '
                         f'{roi_err:.2e}')
    out.update(
        detection_ops=f"MMCV's kernels ({reason}); fallback agrees "
        f'(RoIAlign max diff {roi_err:.1e})',
        roi_align_fallback_max_diff=roi_err)
    return out


def stage_train_step(ctx: Context, model: str, precision: str) -> dict:
    """One row of ``benchmark_pretrain.py``: the recipe's config in ``precision``."""
    config = STEP_CONFIGS[ctx.device][model]
    settings = dict(STEP_SETTINGS[ctx.device])
    if ctx.batch:
        settings['batch'] = ctx.batch
    out = ctx.path('train_step', f'{model}_{precision}.json')
    ctx.run(f'{model}_{precision}', [
        'tools/analysis/benchmark_pretrain.py', config, '--precision', precision,
        '--batch', settings['batch'], '--iters', settings['iters'], '--warmup',
        settings['warmup'], '--peak-size', settings['peak_size'], '--json', out
    ], ctx.limits['step'])
    with open(out) as f:
        row = json.load(f)[0]
    if row['autocast_dtype'] != PRECISION_DTYPES[precision]:
        raise StageError(f'autocast in {row["autocast_dtype"]}, not '
                         f'{PRECISION_DTYPES[precision]}')
    if precision == 'fp16' and row['loss_scale'] is None:
        raise StageError('float16 without a GradScaler')
    if precision == 'bf16' and row['loss_scale'] is not None:
        raise StageError(f'bfloat16 with a loss scaler (scale {row["loss_scale"]})')
    if not math.isfinite(row['loss']):
        raise StageError(f'non-finite loss {row["loss"]}')
    if not (row['images_per_s'] > 0 and 0 < row['mfu'] <= 1
            and row['peak_memory_gib'] > 0):
        raise StageError(f'implausible numbers: {row["images_per_s"]:.3g} img/s, '
                         f'MFU {row["mfu"]:.3g}, {row["peak_memory_gib"]:.3g} GiB')
    scale = '' if row['loss_scale'] is None else f', loss scale {row["loss_scale"]:g}'
    summary = (f'{osp.basename(config)[:28]}.. batch {row["batch"]}: '
               f'{row["images_per_s"]:.1f} img/s, MFU {row["mfu"]:.1%} '
               f'({row["gflops_per_image"]:.1f} GFLOPs/img, {row["peak_dtype"]} '
               f'peak {row["peak_gflops"]:.0f} GFLOP/s), mem '
               f'{row["peak_memory_gib"]:.2f} GiB, loss {row["loss"]:.3f}{scale}')
    keys = ('config', 'batch', 'images_per_s', 'mfu', 'peak_memory_gib',
            'gflops_per_image', 'peak_gflops', 'achieved_gflops', 'loss', 'loss_scale',
            'autocast_dtype', 'params_m')
    return dict(summary=summary, numbers={k: row[k] for k in keys})


def stage_augment(ctx: Context) -> dict:
    """The device-side augmentation's tests; on a GPU its CUDA tests must run."""
    text = ctx.run('augment', [
        '-m', 'pytest', 'tests/test_view_augments.py',
        'tests/test_device_augmentation.py', '-m', 'not e2e', '-q', '-p',
        'no:cacheprovider'
    ], ctx.limits['augment'])
    counts = {k: int(n) for n, k in re.findall(r'(\d+) (passed|skipped)', text)}
    if ctx.device == 'cuda' and counts.get('skipped'):
        raise StageError(f'{counts["skipped"]} test(s) skipped on the GPU: the CUDA '
                         f'tests did not run')
    return dict(
        summary=(f'{counts.get("passed", 0)} passed, {counts.get("skipped", 0)} '
                 f'skipped' + (' (CUDA ops and preprocessor without synchronisation)'
                               if ctx.device == 'cuda' else ' (CUDA tests: no GPU)')),
        numbers=counts)


def stage_dist_resume(ctx: Context) -> dict:
    """tools/dist_train.sh, one process: 4 iterations, then resume iter_2 to 6."""
    work = ctx.path('dist_resume', '')
    backend = 'nccl' if ctx.device == 'cuda' else 'gloo'
    common = [
        f'train_dataloader.dataset.data_root={ctx.photos()}',
        'default_hooks.checkpoint.interval=2',
        'default_hooks.checkpoint.max_keep_ckpts=3', 'default_hooks.logger.interval=1'
    ]
    first = ctx.run(
        'dist_train', [
            'bash', 'tools/dist_train.sh', CMAE_TINY, '1', '--work-dir', work,
            '--cfg-options', 'train_cfg.max_iters=4', *common
        ],
        ctx.limits['dist'],
        env=dict(PORT=str(free_port())))
    if f"backend='{backend}'" not in first:
        raise StageError(f"the run's env_cfg has no backend='{backend}'")
    first_losses = check_losses(first, 4)
    for it in (2, 4):
        if not osp.isfile(osp.join(work, f'iter_{it}.pth')):
            raise StageError(f'no checkpoint iter_{it}.pth in {work}')
    second = ctx.run(
        'dist_resume', [
            'bash', 'tools/dist_train.sh', CMAE_TINY, '1', '--work-dir', work,
            '--resume',
            osp.join(work,
                     'iter_2.pth'), '--cfg-options', 'train_cfg.max_iters=6', *common
        ],
        ctx.limits['dist'],
        env=dict(PORT=str(free_port())))
    resumed = RESUMED.search(second)
    if resumed is None or int(resumed.group(2)) != 2:
        raise StageError('the resumed run did not report "resumed epoch: 0, iter: 2" '
                         f'(got {resumed.group(0) if resumed else "nothing"})')
    iters = [int(m.group(1)) for m in TRAIN_ITER.finditer(second)]
    if iters != [3, 4, 5, 6]:
        raise StageError(f'the resumed run logged iterations {iters}, not 3..6')
    losses = check_losses(second, 4)
    if not osp.isfile(osp.join(work, 'iter_6.pth')):
        raise StageError(f'no checkpoint iter_6.pth in {work}')
    # iterations 3 and 4 again, from the checkpoint: the same losses (as logged, 4
    # digits) on a CPU; on a GPU non-deterministic kernels may change the last digit
    same = losses[:2] == first_losses[2:]
    if not same and ctx.device == 'cpu':
        raise StageError(f'the resumed run repeats iterations 3, 4 with losses '
                         f'{losses[:2]}, the first run had {first_losses[2:]}')
    ctx.checkpoint = osp.join(work, 'iter_6.pth')
    return dict(
        summary=(f'{backend}, 1 process: 4 it (checkpoints 2, 4), --resume '
                 f'iter_2.pth -> resumed at iter {resumed.group(2)}, ran 3..6, '
                 f'loss {losses[0]:.4f} -> {losses[-1]:.4f}; it 3-4 losses '
                 f'{"equal" if same else "differ from"} the first run\'s'),
        numbers=dict(
            backend=backend,
            resumed_iter=int(resumed.group(2)),
            checkpoint_iter=2,
            resumed_iters=iters,
            losses=losses,
            first_run_losses=first_losses,
            repeated_losses_equal=same))


def precision_of(text: str) -> str:
    m = re.search(r'MixedPrecisionOptimWrapper on \w+: ([^(]+?) \(', text)
    return m.group(1) if m else 'float32'


def stage_seg(ctx: Context) -> dict:
    """UperNet + tiny ViT, 10 iterations and a validation on a tiny ADE20K."""
    from cmae_mm.testing import as_cli, build_tiny_ade20k, seg_tiny_options
    from cmae_mm.testing.transfer import SEG_CONFIG
    ckpt = ctx.tiny_checkpoint()
    data = build_tiny_ade20k(ctx.path('data', 'ade'), num_train=4, num_val=2, size=80)
    work = ctx.path('seg', '')
    text = ctx.run('seg', [
        'tools/train.py', SEG_CONFIG, '--work-dir', work, '--cfg-options',
        *as_cli(seg_tiny_options(ckpt, data['data_root'], iters=TRANSFER_ITERS))
    ], ctx.limits['seg'])
    losses = check_losses(text, TRANSFER_ITERS)
    miou = re.findall(r'\bmIoU: ([0-9.]+)', text)
    if not miou:
        raise StageError('no mIoU in the output (validation did not run)')
    return dict(
        summary=(f'{TRANSFER_ITERS} it ({precision_of(text)}), loss '
                 f'{losses[0]:.3f} -> {losses[-1]:.3f}, val mIoU {miou[-1]}'),
        numbers=dict(losses=losses, mIoU=float(miou[-1]), precision=precision_of(text)))


def stage_det(ctx: Context) -> dict:
    """ViTDet Mask R-CNN + tiny ViT, 10 iterations and a validation on tiny COCO."""
    from cmae_mm.testing import build_tiny_coco, det_tiny_options
    from cmae_mm.testing.transfer import DET_CONFIG
    from cmae_mm.transfer.det.ops_fallback import LOG_FALLBACK
    ckpt = ctx.tiny_checkpoint()
    data = build_tiny_coco(ctx.path('data', 'coco', ''))
    work = ctx.path('det', '')
    text = ctx.run('det', [
        'tools/train.py', DET_CONFIG, '--work-dir', work, '--cfg-options',
        *det_tiny_options(ckpt, data['data_root'], iters=TRANSFER_ITERS)
    ], ctx.limits['det'])
    losses = check_losses(text, TRANSFER_ITERS)
    maps = {
        k: re.findall(rf'coco/{k}: (-?[0-9.]+)', text)
        for k in ('bbox_mAP', 'segm_mAP')
    }
    if not all(maps.values()):
        raise StageError('no coco/bbox_mAP and coco/segm_mAP in the output')
    ops = 'torchvision fallback' if LOG_FALLBACK in text else 'MMCV'
    return dict(
        summary=(f'{TRANSFER_ITERS} it ({precision_of(text)}, {ops} NMS/RoIAlign), '
                 f'loss {losses[0]:.3f} -> {losses[-1]:.3f}, val bbox mAP '
                 f'{maps["bbox_mAP"][-1]}, segm mAP {maps["segm_mAP"][-1]}'),
        numbers=dict(
            losses=losses,
            bbox_mAP=float(maps['bbox_mAP'][-1]),
            segm_mAP=float(maps['segm_mAP'][-1]),
            ops=ops,
            precision=precision_of(text)))


def stage_knn(ctx: Context) -> dict:
    """tools/analysis/knn_eval.py of the tiny checkpoint on a tiny ImageNet."""
    from cmae_mm.testing import build_tiny_imagenet
    ckpt = ctx.tiny_checkpoint()
    root = ctx.path('data', 'imagenet', '')
    info = build_tiny_imagenet(root, num_classes=3, train_per_class=4, val_per_class=2)
    work = ctx.path('knn', '')
    opts = [
        f'val_dataloader.dataset.data_root={root}',
        f'val_cfg.bank_dataloader.dataset.data_root={root}'
    ]
    for loader in ('val_dataloader', 'val_cfg.bank_dataloader'):
        opts += [f'{loader}.batch_size=8', f'{loader}.num_workers=0']
    ctx.run('knn', [
        'tools/analysis/knn_eval.py', CMAE_TINY, ckpt, '--data-config',
        'configs/_base_/datasets/imagenet_knn.py', '--k', '5', '--bank-per-class', '4',
        '--work-dir', work, '--cfg-options', *opts
    ], ctx.limits['knn'])
    with open(osp.join(work, 'knn_metrics.json')) as f:
        metrics = json.load(f)['metrics']
    top1 = metrics.get('knn/top1')
    if top1 is None or not 0 <= top1 <= 100:
        raise StageError(f'knn/top1 missing or outside [0, 100]: {metrics}')
    return dict(
        summary=(f'k=5 on {info["train"]} bank / {info["val"]} query images of '
                 f'{len(info["classes"])} classes: top-1 {top1:.1f} %'),
        numbers=dict(metrics))


def _step(model: str, precision: str) -> Callable[[Context], dict]:
    return lambda ctx: stage_train_step(ctx, model, precision)


STAGES: Dict[str, Callable[[Context], dict]] = {
    'env': stage_env,
    'cmae_fp16': _step('cmae', 'fp16'),
    'cmae_bf16': _step('cmae', 'bf16'),
    'conmim_fp16': _step('conmim', 'fp16'),
    'conmim_bf16': _step('conmim', 'bf16'),
    'augment': stage_augment,
    'dist_resume': stage_dist_resume,
    'seg': stage_seg,
    'det': stage_det,
    'knn': stage_knn,
}
#: stages without subprocesses (seconds): run whatever is left of the budget
IN_PROCESS = ('env', )
GROUPS = {'train_step': ['cmae_fp16', 'cmae_bf16', 'conmim_fp16', 'conmim_bf16']}


# ------------------------------------------------------------------- driver
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--device',
        choices=['cuda', 'cpu'],
        help='default: cuda where torch sees a GPU; otherwise the tool stops and '
        'says to pass --device cpu')
    parser.add_argument(
        '--stages',
        nargs='+',
        default=list(STAGES),
        choices=list(STAGES) + list(GROUPS),
        metavar='STAGE',
        help=f'stages to run, in the tool\'s order: {", ".join(STAGES)}; '
        f'train_step = {" ".join(GROUPS["train_step"])} (default: all)')
    parser.add_argument(
        '--out',
        help='also write the table (Markdown) here, and '
        'the rows as JSON next to it (.json)')
    parser.add_argument(
        '--work-dir',
        help='logs, data and work dirs (default: a temporary folder, removed when '
        'every stage passed)')
    parser.add_argument(
        '--budget',
        type=float,
        default=480,
        help='seconds for all stages together (default 480)')
    parser.add_argument(
        '--batch',
        type=int,
        help='images per train_step batch (default: 64 on a GPU, 2 on a CPU)')
    args = parser.parse_args(argv)
    selected = set()
    for name in args.stages:
        selected.update(GROUPS.get(name, [name]))
    args.stages = [s for s in STAGES if s in selected]
    if args.out and args.out.endswith('.json'):
        parser.error('--out names the Markdown file; the JSON goes next to it')
    return args


def choose_device(requested: Optional[str]) -> str:
    """``requested``, or cuda; where CUDA is unusable, ``SystemExit`` with the cause
    and fix (``cmae_mm.engine.cuda_check.diagnose``) and the ``--device cpu`` hint."""
    if requested == 'cpu':
        # before torch initialises CUDA: every stage and subprocess on the CPU
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
        return 'cpu'
    sys.path.insert(0, REPO_ROOT)
    from cmae_mm.engine.cuda_check import diagnose, probe_cuda
    facts = probe_cuda('cuda')
    problem = diagnose(facts)
    if problem is None and facts.cuda_available:
        return 'cuda'
    problem = problem or 'torch.cuda.is_available() is False.'
    raise SystemExit(
        f'{TOOL}: no usable CUDA device. {problem}'
        f'\nTo check this machine without a GPU: python {TOOL} --device cpu')


def run_stage(name: str, ctx: Context) -> dict:
    t0 = time.time()
    row = dict(stage=name, status='ok', summary='', numbers={}, error=None)
    if ctx.remaining() < 5 and name not in IN_PROCESS:
        row['status'] = f'skipped (the {ctx.budget:.0f} s --budget is spent)'
    else:
        print(f'[acceptance] {name} ...', flush=True)
        try:
            row.update(STAGES[name](ctx))
        except Exception as e:  # noqa: BLE001 - every stage runs, failures reported
            row['status'] = 'FAIL'
            row['error'] = (str(e).strip().splitlines() or [type(e).__name__])[0]
            if not isinstance(e, (StageError, SystemExit)):
                row['error'] = f'{type(e).__name__}: {row["error"]}'
                with open(ctx.path('logs', f'{name}.log'), 'a') as f:
                    f.write(traceback.format_exc())
            row['summary'] = row['error']
    row['seconds'] = time.time() - t0
    print(
        f'[acceptance] {name}: {row["status"]} ({row["seconds"]:.1f} s) '
        f'{row["summary"]}',
        flush=True)
    return row


def machine_line(device: str) -> str:
    import platform

    import torch
    if device == 'cuda':
        return (f'{torch.cuda.get_device_name(0)}, torch {torch.__version__} '
                f'(CUDA {torch.version.cuda})')
    return (f'{bench_module().device_name("cpu")} ({os.cpu_count()} cores), '
            f'{platform.system()}, torch {torch.__version__}')


def markdown(rows: List[dict], header: str) -> str:
    lines = [header, '', '| stage | status | key numbers | s |', '|---|---|---|---:|']
    for r in rows:
        summary = r['summary'].replace('|', '/')
        lines.append(f'| {r["stage"]} | {r["status"]} | {summary} | '
                     f'{r["seconds"]:.1f} |')
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    args = parse_args(argv)
    device = choose_device(args.device)
    sys.path.insert(0, REPO_ROOT)
    import cmae_mm  # noqa: F401  (registers every module)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix='gpu_acceptance_')
    os.makedirs(work_dir, exist_ok=True)
    ctx = Context(device, work_dir, args.budget, args.batch)
    t0 = time.time()
    rows = [run_stage(name, ctx) for name in args.stages]
    total = time.time() - t0
    passed = all(r['status'] == 'ok' for r in rows)
    header = (f'GPU acceptance check, --device {device}: {machine_line(device)}; '
              f'{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}; '
              f'{total:.0f} s in all; {"PASSED" if passed else "FAILED"}')
    table = markdown(rows, header)
    print('\n' + table)
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(table)
        with open(osp.splitext(args.out)[0] + '.json', 'w') as f:
            json.dump(
                dict(
                    device=device,
                    machine=machine_line(device),
                    total_s=total,
                    passed=passed,
                    rows=rows),
                f,
                indent=1,
                default=str)
    if passed and not args.work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    elif not passed:
        failed = [r['stage'] for r in rows if r['status'] != 'ok']
        logs = sorted(glob.glob(osp.join(work_dir, 'logs', '*.log')))
        print(f'[acceptance] not passed: {", ".join(failed)}; logs in '
              f'{osp.join(work_dir, "logs")} ({len(logs)} files)')
    return 0 if passed else 1


if __name__ == '__main__':
    sys.exit(main())
