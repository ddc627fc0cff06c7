"""One mixed-precision optim wrapper for GPUs and CPUs.

MMEngine's ``AmpOptimWrapper`` (``mmengine/optim/optimizer/amp_optimizer_wrapper.py``)
asserts a GPU and always builds a ``GradScaler``, so a config naming it cannot run on a
CPU, and a config naming ``OptimWrapper`` never uses mixed precision. This subclass
chooses the precision from the device the Runner trains on (``mmengine.device
.get_device()``) and its ``dtype`` argument:

- ``'auto'`` (default): on a GPU (cuda, npu, mlu, musa) float16 autocast with dynamic
  loss scaling (``GradScaler``, ``loss_scale``); on a CPU bfloat16 autocast, no loss
  scaler; elsewhere (mps) float32;
- ``'float16'``: float16 autocast + loss scaling, on a GPU and on a CPU alike. On a
  CPU (slow: float16 matrix products are not what CPUs are fast at) it is the GPUs'
  code path, ``AmpOptimWrapper``'s ``backward`` / ``step`` / ``state_dict`` with a
  ``torch.amp.GradScaler('cpu')`` of the same ``loss_scale``, so that CPU runs and
  CI test the path every GPU run takes (overflow -> skipped step -> lower scale;
  the scaler state in checkpoints);
- ``'bfloat16'``: bfloat16 autocast, never a loss scaler (a CUDA GPU without native
  bfloat16, i.e. compute capability < 8.0 where PyTorch would emulate it:
  ``ValueError``);
- ``'float32'``: no autocast, no scaler: ``OptimWrapper``'s behaviour.

Float16 on GPUs with dynamic loss scaling is the releases' mixed precision (CMAE's
released ``configs/pre-training/cmae/``: ``AmpOptimWrapper``, dynamic; ConMIM's
``engine_for_pretraining.py``: ``torch.cuda.amp.autocast()`` and a ``GradScaler``
``loss_scaler``). Bfloat16 has float32's exponent
range, so it needs no loss scaling.

What stays float32 under autocast: the parameters, the optimizer state and the
gradients (autocast casts op inputs, never parameters); everything outside the
forward, e.g. the momentum-target EMA of
:class:`~cmae_mm.engine.hooks.TargetUpdateHook` (after the optimizer step, outside
``optim_context``) and the gradient clipping (on unscaled gradients); BatchNorm
running statistics (float32 buffers). The losses of CMAE's contrastive branch and of
ConMIM's :class:`DenoisingContrastiveLoss` are computed in float32 by the models
themselves (autocast would run their matrix products in half precision); MAE's MSE
(``mse_loss``) is on both autocast float32 lists. These float32 islands raise half
inputs to float32 and leave float32 and float64 alone
(:func:`cmae_mm.models.utils.upcast_half`), so a float64 model trains in float64.

A step the ``GradScaler`` skips (gradients not finite after scaling; the scale is
then multiplied by ``backoff_factor``, 0.5) still counts as an iteration for the
schedulers and the momentum-target EMA, as in the releases (see
:class:`~cmae_mm.engine.hooks.TargetUpdateHook`).
"""
import logging
from contextlib import contextmanager
from functools import partial
from typing import Optional, Tuple, Union

import torch
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn

#: devices on which MMEngine's AmpOptimWrapper runs float16 with a GradScaler
SCALER_DEVICES = ('cuda', 'npu', 'mlu', 'musa')


def native_bf16(device: str, cuda=torch.cuda) -> bool:
    """Whether ``device`` (a device type) computes in bfloat16 natively.

    On CUDA: ``cuda.is_bf16_supported(including_emulation=False)`` (compute
    capability >= 8.0, or ROCm): a V100 or T4 "supports" bfloat16 only by emulation,
    far slower than float16. ``cuda`` is ``torch.cuda`` or an object with the same
    ``is_bf16_supported`` (tests describe a GPU that is not there). Other devices:
    True (their autocast decides)."""
    if device != 'cuda':
        return True
    return bool(cuda.is_bf16_supported(including_emulation=False))


def build_loss_scaler(
        loss_scale: Union[str, float, dict],
        device: str,
        use_fsdp: bool = False) -> Tuple[torch.amp.GradScaler, Optional[float]]:
    """``AmpOptimWrapper``'s ``GradScaler`` (``ShardedGradScaler`` with
    ``use_fsdp``) for any ``device`` type, with its ``loss_scale`` semantics:
    ``'dynamic'``: the defaults (initial scale 2**16, halved on overflow, doubled
    after 2000 finite steps); a float: a static scale; a dict: ``GradScaler``'s
    keyword arguments. Returns ``(scaler, static scale or None)``."""
    if use_fsdp:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
        make = partial(ShardedGradScaler, device)
    else:
        make = partial(torch.amp.GradScaler, device)
    if loss_scale == 'dynamic':
        return make(), None
    if isinstance(loss_scale, float):
        return make(init_scale=loss_scale), loss_scale
    if isinstance(loss_scale, dict):
        return make(**loss_scale), None
    raise TypeError(f"MixedPrecisionOptimWrapper: loss_scale must be 'dynamic', a "
                    f'float (static scale) or a dict of GradScaler arguments, got '
                    f'{loss_scale!r}.')


@OPTIM_WRAPPERS.register_module()
class MixedPrecisionOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` that picks float16 + loss scaling, bfloat16 or float32 by
    device (table in the module docstring); the Runner uses it as any
    ``OptimWrapper`` (``update_params``, ``accumulative_counts``, ``clip_grad``).

    Checkpoints resume in both directions: with a scaler, ``state_dict`` holds
    ``'loss_scaler'`` (as ``AmpOptimWrapper``); without one it has no such key, and
    loading a state that has it drops the scaler state (``AmpOptimWrapper`` loads a
    state without it and keeps its fresh scaler).

    Args:
        dtype (str | torch.dtype): ``'auto'`` (default), ``'float16'``,
            ``'bfloat16'`` or ``'float32'``.
        loss_scale (str | float | dict): ``AmpOptimWrapper``'s, used with float16
            only. Defaults to ``'dynamic'``.
        use_fsdp (bool): ``AmpOptimWrapper``'s (ShardedGradScaler), float16 only.
        **kwargs: ``OptimWrapper``'s (``optimizer``, ``accumulative_counts``,
            ``clip_grad``).
    """

    valid_dtypes = ('auto', 'float16', 'bfloat16', 'float32')

    def __init__(self,
                 dtype: Union[str, torch.dtype] = 'auto',
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 use_fsdp: bool = False,
                 **kwargs) -> None:
        device = get_device()
        cast_dtype, use_scaler, reason = self.choose_precision(dtype, device)
        if use_scaler and device in SCALER_DEVICES:
            super().__init__(
                loss_scale=loss_scale, dtype=cast_dtype, use_fsdp=use_fsdp, **kwargs)
        elif use_scaler:
            # float16 on a CPU: AmpOptimWrapper.__init__ asserts a GPU and builds a
            # torch.cuda.amp.GradScaler; the same state with a GradScaler for device
            OptimWrapper.__init__(self, **kwargs)
            self.loss_scaler, self._scale_update_param = build_loss_scaler(
                loss_scale, device, use_fsdp)
            self.cast_dtype = cast_dtype
        else:
            # AmpOptimWrapper.__init__ asserts a GPU and builds a GradScaler: skip it
            OptimWrapper.__init__(self, **kwargs)
            self._scale_update_param = None
            self.loss_scaler = None
            self.cast_dtype = cast_dtype  # None: no autocast
        self.device_type = device
        if cast_dtype is None:
            chosen = 'float32 (no autocast, no loss scaler)'
        elif use_scaler:
            chosen = f'float16 autocast with loss scaling (loss_scale={loss_scale!r})'
            if device not in SCALER_DEVICES:
                chosen += ', slow on a CPU, same code path as on GPUs'
        else:
            chosen = 'bfloat16 autocast, no loss scaler'
        print_log(
            f'MixedPrecisionOptimWrapper on {device}: {chosen} ({reason}).',
            logger='current',
            level=logging.INFO)

    @classmethod
    def choose_precision(cls,
                         dtype: Union[str, torch.dtype],
                         device: str,
                         cuda=torch.cuda) -> Tuple[Optional[torch.dtype], bool, str]:
        """``(autocast dtype or None for float32, loss scaler?, reason)`` for
        ``dtype`` on ``device`` (a device type: 'cuda', 'cpu', ...); ``cuda``: see
        :func:`native_bf16`."""
        if isinstance(dtype, torch.dtype):
            dtype = str(dtype).replace('torch.', '')
        if dtype not in cls.valid_dtypes:
            raise ValueError(f'MixedPrecisionOptimWrapper: dtype must be one of '
                             f'{cls.valid_dtypes}, got {dtype!r}.')
        gpu = device in SCALER_DEVICES
        if dtype == 'auto':
            if gpu:
                return (torch.float16, True, "dtype='auto' on a GPU: the releases' "
                        'float16 with dynamic loss scaling')
            if device == 'cpu':
                return (torch.bfloat16, False, "dtype='auto' on a CPU: bfloat16 keeps "
                        "float32's exponent range, so no loss scaling (dtype="
                        "'float16' runs the GPUs' float16 + loss scaling, slowly)")
            return None, False, f"dtype='auto': no autocast on {device}"
        if dtype == 'float32':
            return None, False, "dtype='float32'"
        if dtype == 'float16':
            if not gpu and device != 'cpu':
                raise ValueError(
                    f"MixedPrecisionOptimWrapper: no float16 autocast with loss "
                    f"scaling on {device}; use dtype='float32' (--precision fp32).")
            return torch.float16, True, "dtype='float16'"
        # bfloat16
        if not native_bf16(device, cuda):
            raise ValueError(
                "MixedPrecisionOptimWrapper: dtype='bfloat16' but this GPU has no "
                'native bfloat16 (compute capability < 8.0, e.g. V100 or T4: PyTorch '
                "would emulate it, slowly). Use dtype='auto' / 'float16' "
                '(--precision auto / fp16).')
        if not gpu and device != 'cpu':
            raise ValueError(f"MixedPrecisionOptimWrapper: no bfloat16 autocast on "
                             f"{device}; use dtype='float32' (--precision fp32).")
        return torch.bfloat16, False, "dtype='bfloat16': no loss scaling for bfloat16"

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        if self.loss_scaler is None:
            OptimWrapper.backward(self, loss, **kwargs)
        else:
            super().backward(loss, **kwargs)

    def step(self, **kwargs) -> None:
        """The optimizer step; with a loss scaler ``AmpOptimWrapper``'s (skipped when
        the gradients overflowed, then the scale is lowered), and the scale after
        it logged as ``loss_scale`` (as ConMIM's ``engine_for_pretraining.py``)."""
        if self.loss_scaler is None:
            OptimWrapper.step(self, **kwargs)
        else:
            super().step(**kwargs)
            self.message_hub.update_scalar('train/loss_scale',
                                           self.loss_scaler.get_scale())

    def state_dict(self) -> dict:
        if self.loss_scaler is None:
            return OptimWrapper.state_dict(self)  # no 'loss_scaler' key
        return super().state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        if self.loss_scaler is None:
            if state_dict.pop('loss_scaler', None) is not None:
                print_log(
                    'MixedPrecisionOptimWrapper: the checkpoint holds a loss-scaler '
                    'state (float16 training); this run has no scaler, it is dropped.',
                    logger='current',
                    level=logging.INFO)
            OptimWrapper.load_state_dict(self, state_dict)
        else:
            super().load_state_dict(state_dict)  # keeps a fresh scaler if absent

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Autocast to the chosen dtype (none for float32), plus ``OptimWrapper``'s
        gradient-accumulation context. On a CPU ``torch.autocast`` itself
        (MMEngine's ``autocast`` allows bfloat16 only there)."""
        if self.cast_dtype is None:
            with OptimWrapper.optim_context(self, model):
                yield
        elif self.device_type == 'cpu':
            with OptimWrapper.optim_context(self, model), torch.autocast(
                    'cpu', dtype=self.cast_dtype):
                yield
        else:
            with super().optim_context(model):
                yield

    def __repr__(self) -> str:
        dtype = 'float32' if self.cast_dtype is None else str(self.cast_dtype)[6:]
        scaler = 'none' if self.loss_scaler is None else 'GradScaler'
        return (f'{super().__repr__()}\nprecision: {dtype} on {self.device_type}, '
                f'loss scaler: {scaler}')


#: --precision -> MixedPrecisionOptimWrapper dtype (fp32: plain OptimWrapper)
PRECISIONS = {'auto': 'auto', 'fp16': 'float16', 'bf16': 'bfloat16', 'fp32': None}
#: wrapper types --amp / --precision may replace
PRECISION_WRAPPERS = ('OptimWrapper', 'AmpOptimWrapper', 'MixedPrecisionOptimWrapper')
#: AmpOptimWrapper arguments a plain OptimWrapper does not take
AMP_KEYS = ('loss_scale', 'dtype', 'use_fsdp')


def set_precision(cfg, precision: str, flag: str) -> None:
    """Make ``cfg.optim_wrapper`` (a config) train in ``precision``: a
    :data:`PRECISIONS` key, or 'amp' (mixed precision by device, keeping an explicit
    float16 / bfloat16). ``flag`` names the option in the error for a foreign
    wrapper type (``tools/train.py --precision``, the benchmark tool's)."""
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper not in PRECISION_WRAPPERS:
        raise ValueError(f'{flag} replaces optim_wrapper.type {PRECISION_WRAPPERS}; '
                         f'the config has {wrapper!r}.')
    if precision == 'fp32':
        cfg.optim_wrapper.type = 'OptimWrapper'
        for key in AMP_KEYS:
            cfg.optim_wrapper.pop(key, None)
        return
    if precision == 'amp':
        dtype = str(cfg.optim_wrapper.get('dtype')).replace('torch.', '')
        dtype = dtype if dtype in ('float16', 'bfloat16') else 'auto'
    else:
        dtype = PRECISIONS[precision]
    cfg.optim_wrapper.type = 'MixedPrecisionOptimWrapper'
    cfg.optim_wrapper.dtype = dtype
