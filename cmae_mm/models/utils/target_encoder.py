"""The momentum-updated target shared by CMAE and ConMIM."""
from mmengine.logging import MessageHub
from mmpretrain.models.utils import CosineEMA
from torch import nn


def update_target_encoder(target_encoder: CosineEMA, online: nn.Module) -> None:
    """``theta_t <- m * theta_t + (1 - m) * theta_s`` before the target forward.

    ``CosineEMA`` takes ``momentum = 1 - m`` and, for its cosine schedule, reads the
    number of training iterations from the MessageHub's ``max_iters`` (MMEngine's
    Runner sets it). With a constant ``m`` that number does not matter, so calls outside
    a Runner (tests, notebooks) get a placeholder; a cosine schedule needs the Runner.
    The first update copies the online weights, as in MMPretrain's MoCo v3.

    Args:
        target_encoder: the EMA copy, e.g. ``CosineEMA(nn.Sequential(backbone,
            projector))``.
        online: the online modules in the same structure, e.g.
            ``nn.Sequential(self.backbone, self.projector)``.
    """
    hub = MessageHub.get_current_instance()
    if hub.get_info('max_iters') is None:
        if target_encoder.momentum != target_encoder.end_momentum:
            raise RuntimeError(
                'The cosine momentum schedule (end_momentum != base_momentum) needs '
                "the MessageHub's 'max_iters': train through MMEngine's Runner "
                "(tools/train.py), or call MessageHub.get_current_instance()."
                "update_info('max_iters', N) first.")
        hub.update_info('max_iters', 1)  # constant momentum: any value will do
    target_encoder.update_parameters(online)
