"""The momentum target, in one home: :class:`MomentumTarget` (the EMA copy of online
modules) and :class:`MomentumTargetSelfSupervisor` (the algorithm base that builds,
initialises and updates it and holds the contract with ``TargetUpdateHook``), which
CMAE and ConMIM subclass."""
from math import cos, pi
from typing import List, Optional, Tuple, Union

import torch
from mmengine.logging import MessageHub
from mmengine.model import BaseAveragedModel
from mmpretrain.models import BaseSelfSupervisor
from mmpretrain.structures import DataSample
from torch import nn


class MomentumTarget(BaseAveragedModel):
    """A momentum (EMA) copy of online modules, updated after each optimizer step.

    As in both releases (CMAE ``cmae/models/algorithms/cmae.py`` ``momentum_update``
    with ``cmae/core/hooks/momentum_update_hook.py``; ConMIM
    ``engine_for_pretraining.py``):

    - the copy starts equal to the online modules (:meth:`copy_from`, called by the
      algorithm's ``init_weights``);
    - the update is fused: ``torch._foreach_mul_`` / ``_foreach_add_`` over all
      parameters (a few multi-tensor kernels instead of two per parameter, about 400
      for ViT-B), with the same arithmetic as the per-tensor loop;
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
        targets = list(self.avg_parameters.values())
        sources = [
            online[name].detach().to(target.device)
            for name, target in self.avg_parameters.items()
        ]
        # one fused multi-tensor kernel per op (a handful of launches instead of two
        # per parameter); the same arithmetic as target.mul_(m).add_(s, alpha=1 - m)
        torch._foreach_mul_(targets, m)
        torch._foreach_add_(targets, sources, alpha=1 - m)
        self.steps += 1


class MomentumTargetSelfSupervisor(BaseSelfSupervisor):
    """Base of self-supervised algorithms trained against a momentum target.

    The target (the "momentum encoder" of MoCo, He et al. 2020; the "target network"
    of BYOL, Grill et al. 2020) is a :class:`MomentumTarget` of online modules:
    CMAE's encoder + projector, ConMIM's encoder + projector. This base owns
    everything but the loss:

    - construction: :meth:`build_target` wraps ``nn.Sequential`` of the modules named
      by :attr:`target_modules`, in that order, as ``self.target_encoder`` (checkpoint
      keys ``target_encoder.module.<i>.*`` and ``target_encoder.steps``); a subclass
      calls it in ``__init__`` once those modules are built;
    - initialisation: :meth:`init_weights` runs the modules' own initialisation, then
      :meth:`init_online_weights` (override, e.g. a release's scheme), then makes the
      target a copy of the online modules (parameters and buffers);
    - the update: :meth:`update_target` (``cur_iter``, ``max_iters``), the EMA step
      :class:`~cmae_mm.engine.hooks.TargetUpdateHook` runs after each optimizer step;
    - the hook contract: the hook's ``before_train`` sets
      :attr:`target_update_hook_registered`; ``forward(mode='loss')`` inside a
      Runner's training loop without it raises (:meth:`check_target_update_hook`).

    A new algorithm of this kind is a subclass that sets :attr:`target_modules`,
    builds its extra modules, calls :meth:`build_target` and writes ``loss()``
    reading the target through ``self.target_encoder.module[i]`` under
    ``torch.no_grad()``; its configs list ``dict(type='TargetUpdateHook')`` in
    ``custom_hooks``.
    """

    #: attribute names of the online modules the target copies, in order
    target_modules: Tuple[str, ...] = ()
    #: set by TargetUpdateHook.before_train (the hook contract)
    target_update_hook_registered: bool = False

    def online_target_modules(self) -> nn.Sequential:
        """The online modules the target tracks, ``nn.Sequential`` in
        :attr:`target_modules` order (same structure as ``target_encoder.module``)."""
        if not self.target_modules:
            raise TypeError(
                f'{type(self).__name__} sets no target_modules: name the online '
                f"modules its momentum target copies, e.g. target_modules = "
                f"('backbone', 'neck').")
        missing = [n for n in self.target_modules if not hasattr(self, n)]
        if missing:
            raise AttributeError(
                f'{type(self).__name__}.target_modules names {missing}, which are not '
                f'built: build them before calling build_target().')
        return nn.Sequential(*(getattr(self, n) for n in self.target_modules))

    def build_target(self,
                     momentum: float = 0.004,
                     end_momentum: Optional[float] = None) -> None:
        """Create ``self.target_encoder`` from the online modules (a deep copy).

        Args:
            momentum (float): ``1 - m`` at the start of training.
            end_momentum (float, optional): ``1 - m`` at the end (cosine schedule);
                None keeps ``m`` constant.
        """
        self.target_encoder = MomentumTarget(
            self.online_target_modules(), momentum=momentum, end_momentum=end_momentum)

    def _target(self) -> MomentumTarget:
        target = self._modules.get('target_encoder')
        if not isinstance(target, MomentumTarget):
            raise AttributeError(
                f'{type(self).__name__} has no momentum target: call '
                f'self.build_target(momentum, end_momentum) at the end of __init__.')
        return target

    def init_online_weights(self) -> None:
        """Initialisation of the online modules after their own, before the target
        copies them; none by default."""

    def init_weights(self) -> None:
        """The modules' own initialisation, :meth:`init_online_weights`, then the
        target as a copy of the online modules. A checkpoint loaded afterwards
        (``load_from``, ``--resume``) keeps its own target."""
        super().init_weights()
        self.init_online_weights()
        self._target().copy_from(self.online_target_modules())

    def update_target(self, cur_iter: int = 0, max_iters: int = 1) -> None:
        """EMA step of the target after the optimizer step of ``cur_iter`` (0-based)
        of ``max_iters`` (:class:`~cmae_mm.engine.hooks.TargetUpdateHook` calls it;
        outside a Runner the caller does)."""
        self._target().update_parameters(self.online_target_modules(), cur_iter,
                                         max_iters)

    def check_target_update_hook(self) -> None:
        """Raise when training in a Runner without :class:`TargetUpdateHook`.

        Inside MMEngine's training loop (message-hub info ``loop_stage == 'train'``)
        the target must be updated after each optimizer step by the hook, which marks
        the model when training starts; a config that forgot it would train against
        a target frozen at its initial weights. Outside a Runner (tests, notebooks)
        nothing is checked: there the caller runs :meth:`update_target` itself.
        """
        if not self.training or self.target_update_hook_registered:
            return
        if MessageHub.get_current_instance().get_info('loop_stage') == 'train':
            raise RuntimeError(
                f'{type(self).__name__} is training without TargetUpdateHook, so its '
                f'momentum target would never be updated. Add it to the config: '
                f"custom_hooks = [dict(type='TargetUpdateHook')] (the pretraining "
                f'configs of cmae_mm have it).')

    def forward(self,
                inputs: Union[torch.Tensor, List[torch.Tensor]],
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        """:class:`BaseSelfSupervisor`'s dispatch, with the hook contract checked
        before ``loss()`` (``mode='loss'``)."""
        if mode == 'loss':
            self.check_target_update_hook()
        return super().forward(inputs, data_samples, mode)
