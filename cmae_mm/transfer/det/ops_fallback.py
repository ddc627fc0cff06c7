"""NMS and RoIAlign through torchvision's kernels when MMCV has no CUDA ops.

An MMCV built on a machine without a GPU (a shared home directory, a cached wheel)
imports fine (``import mmcv._ext``) but has CPU kernels only: MMDetection's Mask R-CNN
then stops in its first CUDA iteration with ``RuntimeError: nms_impl: implementation
for device cuda:0 not found``, and RoIAlign (the RoI extractors and the mask targets)
would fail next. torchvision's wheel ships CUDA and CPU kernels of both ops
(``torchvision.ops.nms``, ``torch.ops.torchvision.roi_align`` and its backward).

Where the ops are looked up. MMDetection binds MMCV's functions when it is imported:
``from mmcv.ops import batched_nms`` (``mmdet/models/dense_heads/rpn_head.py``),
``from mmcv.ops.nms import batched_nms`` (``mmdet/models/layers/bbox_nms.py``),
``from mmcv.ops.roi_align import roi_align`` (``mmdet/structures/mask/structures.py``,
``BitmapMasks.crop_and_resize``, i.e. the mask targets) and ``getattr(mmcv.ops,
'RoIAlign')`` (``BaseRoIExtractor.build_roi_layers``). Replacing ``mmcv.ops.nms`` or
``mmcv.ops.roi_align`` afterwards would miss every one of those bindings. All of them
end in ``NMSop.forward`` (``mmcv/ops/nms.py``; ``batched_nms`` picks ``nms`` from that
module) and ``RoIAlignFunction.forward`` / ``.backward`` (``mmcv/ops/roi_align.py``),
which look up the compiled module through the global name ``ext_module`` of their
module at call time. That name, in those two modules, is the one place patched here:
it is replaced by :class:`TorchvisionExt`, which forwards every attribute to MMCV's
``_ext`` and runs ``nms``, ``roi_align_forward`` and ``roi_align_backward`` through
torchvision for the tensors of its scope (:data:`SCOPES`: CUDA tensors when MMCV has
no CUDA ops; bfloat16 tensors, for which MMCV has no kernel in any build, computed in
float32; every tensor when forced). Nothing else in MMCV or MMDetection changes.

Why not MMCV's own switch, ``RoIAlign(use_torchvision=True)``: it covers the module
only (the mask targets call the ``roi_align`` function), it is a per-layer config
option (every config would change, and torchvision would be used even where MMCV's
CUDA kernel exists), and it ignores ``pool_mode`` (torchvision's RoIAlign averages).
With ``aligned=True`` it passes ``aligned`` to torchvision, whose kernel computes what
MMCV's does: the RoI scaled by ``spatial_scale`` and shifted by -0.5, no minimum size,
``sampling_ratio <= 0`` -> ``ceil(roi size / output size)`` samples per bin, samples
outside ``[-1, size]`` count as 0, the bin value their mean (tests/
test_det_ops_fallback.py checks this to 1e-5, and the gradients). ``pool_mode='max'``
has no torchvision kernel: routing it raises an error naming the fix.

NMS: torchvision keeps a box unless its IoU with a kept, higher-scoring box exceeds
the threshold, and returns the kept indices by decreasing score: MMCV's ``nms`` with
``offset=0`` (what MMDetection uses); ``offset=1`` (box sides ``x2 - x1 + 1``) is run by
adding 1 to ``x2, y2``. ``score_threshold`` and ``max_num`` are applied by ``NMSop``
around the kernel, as for MMCV's. Boxes with equal scores may be kept in another order
than MMCV's (as between MMCV's own CPU and CUDA kernels).

Switch: the environment variable ``CMAE_MM_TORCHVISION_OPS`` (read by
:func:`prepare_detection_ops`, which the launch calls for detection configs):

- unset or ``auto``: the fallback is enabled, and logged, for a detection run on CUDA
  whose MMCV has no working CUDA ops (CUDA tensors), and for one that trains in
  bfloat16, e.g. mixed precision on a CPU (bfloat16 tensors);
- ``1``: the fallback is forced, for every tensor (tests; CPU runs of the same path);
- ``0``: never; a detection run that needs it stops with an error naming the cause
  and the fix.
"""
import functools
import importlib
import logging
import os
from collections import Counter
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional, Tuple

import torch
from mmengine.logging import print_log

#: environment variable: unset / 'auto', '1' (force), '0' (off); see module docstring
ENV_VAR = 'CMAE_MM_TORCHVISION_OPS'
ENV_VALUES = {'': 'auto', 'auto': 'auto', '1': 'force', '0': 'off'}
#: MMCV modules whose ``ext_module`` is replaced
PATCHED_MODULES = ('mmcv.ops.nms', 'mmcv.ops.roi_align')
#: calls routed through torchvision in this process, by op name
FALLBACK_CALLS: Counter = Counter()

NO_CUDA_OPS = 'MMCV was built without CUDA ops'
LOG_FALLBACK = "NMS and RoIAlign run through torchvision's kernels"
#: what goes to torchvision, narrowest first (bfloat16 tensors are in every scope)
SCOPES = {
    'bfloat16': 'bfloat16 tensors, computed in float32; the others through MMCV',
    'cuda': "CUDA tensors and bfloat16 ones; CPU ones through MMCV's CPU kernels",
    'all': 'all tensors',
}

_state: Dict[str, Any] = dict(originals=None, scope=None)


@functools.lru_cache(maxsize=None)
def mmcv_cuda_ops_status() -> Tuple[bool, str]:
    """``(usable, reason)``: whether MMCV's compiled ops run on this machine's CUDA
    device, and why not. Checks ``mmcv.ops.get_compiling_cuda_version()`` (``'not
    available'`` for an MMCV built without CUDA) and, where a GPU is visible, runs
    MMCV's own ``nms`` kernel on two boxes on it (this also catches an MMCV whose
    kernels miss the GPU's architecture). Cached for the process."""
    from mmcv.ops import get_compiling_cuda_version
    from mmcv.utils import ext_loader
    version = get_compiling_cuda_version()
    if version == 'not available':
        return False, NO_CUDA_OPS
    if not torch.cuda.is_available():
        return True, (f'MMCV built with CUDA {version}; no GPU visible to check '
                      'its kernels')
    ext = ext_loader.load_ext('_ext', ['nms'])  # MMCV's kernel, never the fallback
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]], device='cuda')
    scores = torch.tensor([0.9, 0.8], device='cuda')
    gpu = torch.cuda.get_device_name()
    try:
        keep = ext.nms(boxes, scores, iou_threshold=0.5, offset=0).tolist()
    except RuntimeError as err:
        return False, (f'MMCV was built with CUDA {version}, but its nms kernel '
                       f'fails on {gpu} ({err})')
    if keep != [0]:
        return False, (f'MMCV was built with CUDA {version}, but its nms kernel on '
                       f'{gpu} keeps boxes {keep} of two overlapping ones, not [0]')
    return True, f'MMCV CUDA ops (CUDA {version}) work on {gpu}'


def mmcv_cuda_ops_available() -> bool:
    """Whether MMCV's compiled ops run on CUDA here (:func:`mmcv_cuda_ops_status`)."""
    return mmcv_cuda_ops_status()[0]


def _routed(tensor: torch.Tensor) -> bool:
    """Whether an op on ``tensor`` goes to torchvision (:data:`SCOPES`). Bfloat16
    always does: MMCV has no bfloat16 kernel of either op (RoIAlign dispatches
    float, double and half; the CPU NMS reads float)."""
    scope = _state['scope']
    return (scope == 'all' or tensor.dtype == torch.bfloat16
            or (scope == 'cuda' and tensor.device.type != 'cpu'))


def _float(tensor: torch.Tensor) -> torch.Tensor:
    """bfloat16 -> float32 (torchvision's kernels have no bfloat16 either)."""
    return tensor.float() if tensor.dtype == torch.bfloat16 else tensor


class TorchvisionExt:
    """Stands for MMCV's compiled ``_ext`` in ``mmcv.ops.nms`` and
    ``mmcv.ops.roi_align``: ``nms``, ``roi_align_forward`` and
    ``roi_align_backward`` with MMCV's signatures, run by torchvision for routed
    tensors and by MMCV otherwise; every other attribute is MMCV's."""

    def __init__(self, ext: Any) -> None:
        self._ext = ext

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ext, name)

    def nms(self, bboxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
            offset: int) -> torch.Tensor:
        """Kept indices (K,) int64 by decreasing score of ``bboxes`` (N, 4) x1y1x2y2
        with ``scores`` (N,)."""
        if not _routed(bboxes):
            return self._ext.nms(
                bboxes, scores, iou_threshold=iou_threshold, offset=offset)
        import torchvision
        FALLBACK_CALLS['nms'] += 1
        bboxes, scores = _float(bboxes), _float(scores)
        if offset:
            bboxes = torch.cat([bboxes[:, :2], bboxes[:, 2:] + offset], dim=1)
        return torchvision.ops.nms(bboxes, scores, float(iou_threshold))

    def roi_align_forward(self, input: torch.Tensor, rois: torch.Tensor,
                          output: torch.Tensor, argmax_y: torch.Tensor,
                          argmax_x: torch.Tensor, **kwargs) -> None:
        """Fill ``output`` (K, C, h, w) with the RoIs (K, 5: batch index, x1, y1, x2,
        y2) of ``input`` (N, C, H, W); MMCV's keyword arguments."""
        if not _routed(input):
            return self._ext.roi_align_forward(input, rois, output, argmax_y, argmax_x,
                                               **kwargs)
        _check_avg(kwargs['pool_mode'])
        FALLBACK_CALLS['roi_align_forward'] += 1
        output.copy_(
            torch.ops.torchvision.roi_align(
                _float(input), _float(rois), float(kwargs['spatial_scale']),
                int(kwargs['aligned_height']), int(kwargs['aligned_width']),
                int(kwargs['sampling_ratio']), bool(kwargs['aligned'])))

    def roi_align_backward(self, grad_output: torch.Tensor, rois: torch.Tensor,
                           argmax_y: torch.Tensor, argmax_x: torch.Tensor,
                           grad_input: torch.Tensor, **kwargs) -> None:
        """Fill ``grad_input`` (N, C, H, W) from ``grad_output`` (K, C, h, w)."""
        if not _routed(grad_output):
            return self._ext.roi_align_backward(grad_output, rois, argmax_y, argmax_x,
                                                grad_input, **kwargs)
        _check_avg(kwargs['pool_mode'])
        FALLBACK_CALLS['roi_align_backward'] += 1
        n, c, h, w = grad_input.shape
        grad_input.copy_(
            torch.ops.torchvision._roi_align_backward(
                _float(grad_output), _float(rois), float(kwargs['spatial_scale']),
                int(kwargs['aligned_height']), int(kwargs['aligned_width']), n, c, h, w,
                int(kwargs['sampling_ratio']), bool(kwargs['aligned'])))


def _check_avg(pool_mode: int) -> None:
    if pool_mode != 1:  # RoIAlignFunction: 0 = 'max', 1 = 'avg'
        raise NotImplementedError(
            "RoIAlign with pool_mode='max' has no torchvision kernel, and MMCV has "
            'none for this tensor here (MMCV built without CUDA ops, or bfloat16). '
            "Use pool_mode='avg' (MMDetection's default), train in float32 "
            '(--precision fp32), or rebuild MMCV with CUDA ops on a GPU node: bash '
            'tools/setup_env.sh --force.')


def torchvision_ops_enabled() -> bool:
    """Whether :func:`enable_torchvision_ops` is in effect in this process."""
    return _state['originals'] is not None


def enable_torchvision_ops(scope: str = 'cuda',
                           reason: Optional[str] = None,
                           force: bool = False) -> None:
    """Route MMCV's NMS and RoIAlign through torchvision for the tensors of
    ``scope`` (:data:`SCOPES`: 'bfloat16', 'cuda' or 'all', the forced fallback of
    the tests; ``force=True`` is ``scope='all'``). Logged once per scope, with
    ``reason`` (why, e.g. ``'MMCV was built without CUDA ops'``); a second call can
    only widen the scope. Undo with :func:`disable_torchvision_ops`."""
    import torchvision
    scope = 'all' if force else scope
    if scope not in SCOPES:
        raise ValueError(f'scope must be one of {tuple(SCOPES)}, got {scope!r}.')
    if not hasattr(torch.ops.torchvision, '_roi_align_backward'):
        raise RuntimeError(
            f'torchvision {torchvision.__version__} has no compiled roi_align '
            'backward (torch.ops.torchvision._roi_align_backward); reinstall the '
            'torchvision wheel matching torch (bash tools/setup_env.sh --force).')
    order = list(SCOPES)
    current = _state['scope']
    if current is not None and order.index(scope) <= order.index(current):
        return
    if current is None:
        originals = {}
        for name in PATCHED_MODULES:
            module = importlib.import_module(name)
            originals[name] = module.ext_module
            module.ext_module = TorchvisionExt(module.ext_module)
        _state['originals'] = originals
    _state['scope'] = scope
    if reason is None:
        reason = {
            'all': f'forced ({ENV_VAR}=1 or scope=all)',
            'cuda': NO_CUDA_OPS,
            'bfloat16': "MMCV's NMS and RoIAlign have no bfloat16 kernels"
        }[scope]
    print_log(
        f'{reason}; {LOG_FALLBACK} ({SCOPES[scope]}).',
        logger='current',
        level=logging.WARNING)


def disable_torchvision_ops() -> None:
    """Restore MMCV's own ``ext_module`` (undo :func:`enable_torchvision_ops`)."""
    if not torchvision_ops_enabled():
        return
    for name, ext in _state['originals'].items():
        importlib.import_module(name).ext_module = ext
    _state.update(originals=None, scope=None)


@contextmanager
def torchvision_ops(scope: str = 'all', force: bool = True) -> Iterator[None]:
    """``with torchvision_ops(): ...``: the fallback for the block only, then the
    state before the block. By default forced for all tensors (tests); ``scope``
    applies with ``force=False``."""
    before = _state['scope']
    enable_torchvision_ops('all' if force else scope)
    try:
        yield
    finally:
        if before is None:
            disable_torchvision_ops()
        else:
            _state['scope'] = before


def fallback_mode(environ: Optional[Dict[str, str]] = None) -> str:
    """'auto', 'force' or 'off' from ``CMAE_MM_TORCHVISION_OPS`` (module docstring).
    """
    value = (environ if environ is not None else os.environ).get(ENV_VAR, '')
    value = value.strip().lower()
    if value not in ENV_VALUES:
        raise ValueError(f'{ENV_VAR}={value!r}: expected 1 (force the torchvision '
                         'fallback), 0 (never use it) or auto / unset (use it when '
                         'MMCV has no CUDA ops).')
    return ENV_VALUES[value]


def prepare_detection_ops(cfg, device: str) -> None:
    """Make NMS and RoIAlign runnable on ``device`` for ``cfg`` (an MMEngine config,
    ``optim_wrapper`` final) before the Runner is built. Nothing for a config whose
    ``default_scope`` is not 'mmdet'. Otherwise, with ``CMAE_MM_TORCHVISION_OPS``
    unset / ``auto``: on CUDA without working MMCV CUDA ops, the fallback for CUDA
    tensors; where the config trains in bfloat16 (``MixedPrecisionOptimWrapper``
    'auto' on a CPU, or 'bfloat16'), the fallback for bfloat16 tensors (MMCV has no
    bfloat16 kernels); both logged. ``=0``: in those cases a ``RuntimeError`` naming
    the cause and the fix. ``=1``: the fallback for every tensor."""
    if cfg.get('default_scope') != 'mmdet':
        return
    mode = fallback_mode()
    if mode == 'force':
        enable_torchvision_ops('all')
        return
    device_type = torch.device(device).type
    if device_type == 'cuda':
        usable, reason = mmcv_cuda_ops_status()
        if not usable:
            if mode == 'off':
                raise RuntimeError(
                    f'{reason} (mmcv.ops.get_compiling_cuda_version() = '
                    f'{_compiling_cuda_version()!r}), so the NMS and RoIAlign of this '
                    f'detection config cannot run on {device}, and the torchvision '
                    f'fallback is disabled ({ENV_VAR}=0). Fix: rebuild MMCV with CUDA '
                    'ops on a GPU node (bash tools/setup_env.sh --force), or allow '
                    f'the fallback (unset {ENV_VAR} or set it to auto).')
            enable_torchvision_ops('cuda', reason)
            return
    if _trains_in_bfloat16(cfg, device_type):
        reason = ("MMCV's NMS and RoIAlign have no bfloat16 kernels and this "
                  f'config trains in bfloat16 on {device}')
        if mode == 'off':
            raise RuntimeError(
                f'{reason}, and the torchvision fallback is disabled ({ENV_VAR}=0). '
                'Fix: train in float32 or float16 (tools/train.py --precision fp32 '
                f'/ fp16), or allow the fallback (unset {ENV_VAR} or set it to auto).')
        enable_torchvision_ops('bfloat16', reason)


def _trains_in_bfloat16(cfg, device_type: str) -> bool:
    """Whether ``cfg.optim_wrapper`` autocasts to bfloat16 on ``device_type``."""
    from cmae_mm.engine.optimizers import MixedPrecisionOptimWrapper
    wrapper = cfg.get('optim_wrapper') or {}
    kind = wrapper.get('type', 'OptimWrapper')
    dtype = wrapper.get('dtype')
    if kind == 'MixedPrecisionOptimWrapper':
        try:
            dtype = MixedPrecisionOptimWrapper.choose_precision(
                dtype or 'auto', device_type)[0]
        except ValueError:  # the wrapper raises it, with its fix, when built
            return False
    elif kind != 'AmpOptimWrapper':
        return False
    return str(dtype).replace('torch.', '') == 'bfloat16'


def _compiling_cuda_version() -> str:
    from mmcv.ops import get_compiling_cuda_version
    return get_compiling_cuda_version()
