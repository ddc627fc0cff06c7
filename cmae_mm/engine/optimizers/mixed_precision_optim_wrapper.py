"""One mixed-precision optim wrapper for GPUs and CPUs.

MMEngine's ``AmpOptimWrapper`` (``mmengine/optim/optimizer/amp_optimizer_wrapper.py``)
asserts a GPU and always builds a ``GradScaler``, so a config naming it cannot run on a
CPU, and a config naming ``OptimWrapper`` never uses mixed precision. This subclass
chooses the precision from the device the Runner trains on (``mmengine.device
.get_device()``) and its ``dtype`` argument:

- ``'auto'`` (default): on a GPU (cuda, npu, mlu, musa) float16 autocast with dynamic
  loss scaling (``GradScaler``, ``loss_scale``); on a CPU bfloat16 autocast, no loss
  scaler; elsewhere (mps) float32;
- ``'float16'``: float16 + loss scaling on a GPU; on a CPU a ``ValueError`` (use
  ``'auto'`` / ``'bfloat16'`` / ``'float32'``);
- ``'bfloat16'``: bfloat16 autocast, never a loss scaler (a CUDA GPU without bfloat16:
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
themselves (CPU autocast would run their matrix products in bfloat16); MAE's MSE
(``mse_loss``) is on both autocast float32 lists.
"""
import logging
from contextlib import contextmanager
from typing import Optional, Tuple, Union

import torch
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn

#: devices on which MMEngine's AmpOptimWrapper runs float16 with a GradScaler
SCALER_DEVICES = ('cuda', 'npu', 'mlu', 'musa')


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
        if use_scaler:
            super().__init__(
                loss_scale=loss_scale, dtype=cast_dtype, use_fsdp=use_fsdp, **kwargs)
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
        else:
            chosen = 'bfloat16 autocast, no loss scaler'
        print_log(
            f'MixedPrecisionOptimWrapper on {device}: {chosen} ({reason}).',
            logger='current',
            level=logging.INFO)

    @classmethod
    def choose_precision(cls, dtype: Union[str, torch.dtype],
                         device: str) -> Tuple[Optional[torch.dtype], bool, str]:
        """``(autocast dtype or None for float32, loss scaler?, reason)`` for
        ``dtype`` on ``device`` (a device type: 'cuda', 'cpu', ...)."""
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
                return (torch.bfloat16, False, "dtype='auto' without a GPU: float16 "
                        'autocast needs one; bfloat16 keeps float32\'s exponent '
                        'range, so no loss scaling')
            return None, False, f"dtype='auto': no autocast on {device}"
        if dtype == 'float32':
            return None, False, "dtype='float32'"
        if dtype == 'float16':
            if not gpu:
                raise ValueError(
                    f"MixedPrecisionOptimWrapper: dtype='float16' needs a GPU (float16 "
                    f'autocast with loss scaling); this run is on {device}. Use '
                    f"dtype='auto' or 'bfloat16' (tools/train.py --precision auto / "
                    f"bf16) or 'float32' (--precision fp32).")
            return torch.float16, True, "dtype='float16'"
        # bfloat16
        if device == 'cuda' and not torch.cuda.is_bf16_supported():
            raise ValueError(
                "MixedPrecisionOptimWrapper: dtype='bfloat16' but this GPU has no "
                "bfloat16 support. Use dtype='auto' / 'float16' (--precision auto / "
                'fp16).')
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
        if self.loss_scaler is None:
            OptimWrapper.step(self, **kwargs)
        else:
            super().step(**kwargs)

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
        gradient-accumulation context."""
        context = (
            OptimWrapper.optim_context(self, model)
            if self.cast_dtype is None else super().optim_context(model))
        with context:
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
