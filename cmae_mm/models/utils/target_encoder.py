"""The momentum-updated target shared by CMAE and ConMIM."""
from math import cos, pi
from typing import Optional

import torch
from mmengine.logging import MessageHub
from mmengine.model import BaseAveragedModel
from torch import nn


def check_target_update_hook(model: nn.Module) -> None:
    """Raise when ``model`` trains in a Runner without :class:`TargetUpdateHook`.

    Inside MMEngine's training loop (message-hub info ``loop_stage == 'train'``) the
    target must be updated after each optimizer step by the hook, which marks the
    model when training starts; a config that forgot it would train against a target
    frozen at its initial weights. Outside a Runner (tests, notebooks) nothing is
    checked: there the caller updates the target itself (``model.update_target``).
    """
    if not model.training or getattr(model, 'target_update_hook_registered', False):
        return
    if MessageHub.get_current_instance().get_info('loop_stage') == 'train':
        raise RuntimeError(
            f'{type(model).__name__} is training without TargetUpdateHook, so its '
            f'momentum target would never be updated. Add it to the config: '
            f"custom_hooks = [dict(type='TargetUpdateHook')] (the pretraining "
            f'configs of cmae_mm have it).')


class MomentumTarget(BaseAveragedModel):
    """A momentum (EMA) copy of online modules, updated after each optimizer step.

    As in both releases (CMAE ``cmae/models/algorithms/cmae.py`` ``momentum_update``
    with ``cmae/core/hooks/momentum_update_hook.py``; ConMIM
    ``engine_for_pretraining.py``):

    - the copy starts equal to the online modules (:meth:`copy_from`, called by the
      algorithm's ``init_weights``);
    - after every optimizer step, ``theta_t <- m_k theta_t + (1 - m_k) theta_s`` for
      **parameters only** (:meth:`update_parameters`, called by
      :class:`~cmae_mm.engine.hooks.TargetUpdateHook`). Buffers (BatchNorm running
      statistics) are the target's own: its forward in training mode updates them;
    - in float32 under mixed precision: parameters and buffers keep their dtype
      (autocast casts op inputs only), and the update runs after the optimizer step,
      outside autocast, in the parameters' own dtype (no cast: a float64 model's
      target is updated in float64);
    - ``m_k = m_end - (m_end - m_0) (cos(pi k / K) + 1) / 2`` at iteration ``k`` of
      ``K``: constant for CMAE (``m_0 = m_end = 0.996``), 0.996 -> 1 for ConMIM.

    ``momentum`` / ``end_momentum`` are ``1 - m`` (MMPretrain's convention, as
    :class:`CosineEMA`). Checkpoint keys are those of MMEngine's averaged models:
    ``module.*`` and ``steps`` (the number of updates done).

    Args:
        model (nn.Module): The online modules, e.g. ``nn.Sequential(backbone,
            projector)``; deep-copied, without gradients.
        momentum (float): ``1 - m`` at the start. Defaults to 0.004.
        end_momentum (float, optional): ``1 - m`` at the end; None keeps it constant.
    """

    def __init__(self,
                 model: nn.Module,
                 momentum: float = 0.004,
                 end_momentum: Optional[float] = None) -> None:
        super().__init__(model, interval=1, update_buffers=False)
        end_momentum = momentum if end_momentum is None else end_momentum
        for name, value in (('momentum', momentum), ('end_momentum', end_momentum)):
            if not 0. <= value <= 1.:
                raise ValueError(
                    f'{name} must be in [0, 1] (it is 1 - m of the update theta_t <- '
                    f'm theta_t + (1 - m) theta_s), got {value}.')
        self.momentum = momentum
        self.end_momentum = end_momentum

    def ema_coefficient(self, cur_iter: int, max_iters: int) -> float:
        """``m`` at iteration ``cur_iter`` (0-based) of ``max_iters``."""
        m0, m_end = 1. - self.momentum, 1. - self.end_momentum
        if m0 == m_end:
            return m0
        return m_end - (m_end - m0) * (cos(pi * cur_iter / float(max_iters)) + 1) / 2

    def avg_func(self, averaged_param: torch.Tensor, source_param: torch.Tensor,
                 steps: int) -> None:
        """Not used: :meth:`update_parameters` takes the coefficient explicitly."""
        raise NotImplementedError('call update_parameters(model, cur_iter, max_iters)')

    @torch.no_grad()
    def copy_from(self, model: nn.Module) -> None:
        """Make the target equal to ``model`` (parameters and buffers)."""
        self.module.load_state_dict(model.state_dict())

    @torch.no_grad()
    def update_parameters(self,
                          model: nn.Module,
                          cur_iter: int = 0,
                          max_iters: int = 1) -> None:
        """One EMA step of the parameters after the optimizer step of ``cur_iter``.

        Args:
            model (nn.Module): The online modules, in the same structure.
            cur_iter (int): The 0-based iteration whose optimizer step just ran.
            max_iters (int): Iterations of the whole training (for the cosine form).
        """
        m = self.ema_coefficient(cur_iter, max_iters)
        online = dict(model.named_parameters())
        for name, target in self.avg_parameters.items():
            target.mul_(m).add_(online[name].detach().to(target.device), alpha=1 - m)
        self.steps += 1
