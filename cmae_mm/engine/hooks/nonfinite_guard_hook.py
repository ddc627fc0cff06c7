"""Stop (or skip) before a non-finite loss spoils the weights; never save those."""
import math
from typing import Dict, Optional

import torch
import torch.distributed as torch_dist
from mmengine.dist import is_distributed
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmengine.registry import HOOKS

from ..checkpoint import non_finite_tensors
from .target_update_hook import STEP_SKIPPED_KEY


@HOOKS.register_module()
class NonFiniteGuardHook(Hook):
    """Checks the loss of every iteration before the optimizer uses it.

    MMEngine's ``train_step`` computes the loss and calls
    ``optim_wrapper.update_params`` in one go, so the hook wraps ``update_params`` of
    the run's optim wrapper (any ``OptimWrapper`` subclass, mixed precision included)
    and its ``step`` when training starts: a loss that is not finite on any process
    skips the optimizer step on every process (an all-reduced flag keeps DDP in
    step), its gradients are zeroed, and the message-hub info
    ``'optimizer_step_skipped'`` is set (the target update of
    :class:`TargetUpdateHook` skips too). Then, after the iteration:

    - ``action='stop'`` (default): raise ``FloatingPointError`` naming the iteration,
      every loss term and the learning rate. The weights are those of the last good
      step; the last good checkpoint stays.
    - ``action='skip'``: log a warning and go on; more than
      ``max_consecutive_skips`` skipped steps in a row stop the run as above.

    Independently, ``before_save_checkpoint`` refuses to write a checkpoint whose
    model weights are not all finite, naming them, so a bad model is never saved and
    never rotates a good checkpoint out.

    The flag is computed on the device and read on the host once per iteration,
    after the backward pass is queued (just before the optimizer step, or after the
    backward pass in an accumulation step), so the host never waits for the forward
    pass before launching the backward one.

    fp16 training with dynamic loss scaling skips steps whose *gradients* overflow on
    its own; the guard looks at the loss only, so the two do not interfere.

    Args:
        action (str): ``'stop'`` or ``'skip'``. Defaults to ``'stop'``.
        max_consecutive_skips (int): With ``'skip'``, how many non-finite iterations
            in a row are tolerated. Defaults to 5.
        check_checkpoint (bool): Refuse to save non-finite weights. Defaults to True.
    """

    priority = 'VERY_HIGH'  # after an iteration: before target update and checkpoint

    def __init__(self,
                 action: str = 'stop',
                 max_consecutive_skips: int = 5,
                 check_checkpoint: bool = True) -> None:
        if action not in ('stop', 'skip'):
            raise ValueError(f"NonFiniteGuardHook: action must be 'stop' or 'skip', "
                             f'got {action!r}.')
        if max_consecutive_skips < 0:
            raise ValueError('NonFiniteGuardHook: max_consecutive_skips must be >= 0.')
        self.action = action
        self.max_consecutive_skips = max_consecutive_skips
        self.check_checkpoint = check_checkpoint
        self.consecutive = 0
        self._skipped = False
        self._finite: Optional[torch.Tensor] = None

    # -- intercepting the update -------------------------------------------------
    def before_train(self, runner) -> None:
        wrapper = runner.optim_wrapper
        if not isinstance(wrapper, OptimWrapper):
            runner.logger.warning(
                f'NonFiniteGuardHook: {type(wrapper).__name__} is not a single '
                f'OptimWrapper; non-finite losses are detected after the update only.')
            return
        if getattr(wrapper, '_nonfinite_guarded', False):
            return
        original_update, original_step = wrapper.update_params, wrapper.step
        hub = runner.message_hub

        def update_params(loss: torch.Tensor, *args, **kwargs):
            # the flag stays on the device until the backward pass is queued
            finite = torch.isfinite(loss.detach()).all().float()
            if is_distributed():
                torch_dist.all_reduce(finite, op=torch_dist.ReduceOp.MIN)
            self._finite, self._skipped = finite, False
            result = original_update(loss, *args, **kwargs)
            if self._finite is not None:  # no optimizer step this time (accumulation)
                if self._read_skip(hub):
                    wrapper.zero_grad()  # drop the non-finite gradients
            return result

        def step(**kwargs):
            if self._finite is not None and self._read_skip(hub):
                return  # no step; update_params then zeroes the gradients
            return original_step(**kwargs)

        wrapper.update_params, wrapper.step = update_params, step
        wrapper._nonfinite_guarded = True

    def _read_skip(self, hub) -> bool:
        """Read the loss's finiteness flag on the host (one synchronisation per
        iteration, after the backward pass is queued) and publish the decision."""
        self._skipped = not bool(self._finite.item())
        self._finite = None
        hub.update_info(STEP_SKIPPED_KEY, self._skipped)
        return self._skipped

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[Dict] = None) -> None:
        terms = {
            k: float(v)
            for k, v in (outputs or {}).items()
            if isinstance(v, (torch.Tensor, float, int))
        }
        bad = self._skipped or any(not math.isfinite(v) for v in terms.values())
        if not bad:
            self.consecutive = 0
            return
        self.consecutive += 1
        lrs = [x for v in runner.optim_wrapper.get_lr().values() for x in v]
        lr = (f'{max(lrs):.6g}' if min(lrs) == max(lrs) else
              f'{min(lrs):.6g} to {max(lrs):.6g} across parameter groups')
        message = (f'Non-finite loss at iteration {runner.iter + 1} (epoch '
                   f'{runner.epoch + 1}): ' + ', '.join(f'{k}={v:.6g}'
                                                        for k, v in terms.items()) +
                   f'; learning rate {lr}.')
        if all(math.isfinite(v) for v in terms.values()):  # flagged by another rank
            message = message.replace('Non-finite loss at',
                                      'Non-finite loss on another process at', 1)
        updated = '' if self._skipped else ' The optimizer step was NOT skipped.'
        if self.action == 'stop' or self.consecutive > self.max_consecutive_skips:
            why = ('' if self.action == 'stop' else
                   f' {self.consecutive} non-finite iterations in a row (more than '
                   f'max_consecutive_skips={self.max_consecutive_skips}).')
            raise FloatingPointError(
                message + why + updated + ' The weights are those before this '
                'iteration and no checkpoint was written for it. Typical causes: a '
                'learning rate too high for the batch, a config that leaves no masked '
                'or visible patch, corrupt inputs. To skip such iterations instead, '
                "set default_hooks.nonfinite_guard.action='skip'.")
        runner.logger.warning(message + ' Update skipped '
                              f'({self.consecutive} in a row, at most '
                              f'{self.max_consecutive_skips}).' + updated)

    # -- never save non-finite weights --------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.check_checkpoint:
            return
        bad = non_finite_tensors(checkpoint.get('state_dict', {}))
        if bad:
            raise FloatingPointError(
                f'Refusing to save a checkpoint at iteration {runner.iter}: '
                f'{len(bad)} model tensors are not finite ({bad[:10]}'
                f'{" ..." if len(bad) > 10 else ""}). The last saved checkpoint is '
                f'kept.')
