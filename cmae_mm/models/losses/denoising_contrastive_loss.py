"""ConMIM's denoising contrastive loss (Yi et al., ICLR 2023, Eq. 2)."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..utils.precision import autocast_disabled, upcast_half


@MODELS.register_module()
class DenoisingContrastiveLoss(BaseModule):
    """Intra-image, patch-level InfoNCE over masked positions.

    For every image ``b`` and every masked position ``i`` the query is the online output
    ``q[b, i]`` (computed from the corrupted view) and the keys are all ``N`` target
    outputs ``k[b, :]`` of the *same* image (computed from the full view): the positive
    is ``k[b, i]``, the negatives are the other ``N - 1`` patches of that image. There
    are no cross-image negatives and nothing is gathered across processes (computed
    with autocast off, half-precision inputs raised to float32, float32 and float64
    ones kept)::

        q, k = normalize(pred), normalize(target)           # (B, N, C)
        logits[b] = q[b] @ k[b].T / temperature              # (N, N) per image
        loss = mean over masked (b, i) of CE(logits[b, i], i)

    Args:
        temperature: softmax temperature ``tau``. Defaults to 0.1 (ConMIM).
        loss_weight: multiplier of the loss. Defaults to 1.0.
        init_cfg: unused, kept for the registry's signature.
    """

    def __init__(self,
                 temperature: float = 0.1,
                 loss_weight: float = 1.0,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}.')
        self.temperature = temperature
        self.loss_weight = loss_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            pred: online outputs, (B, N, C).
            target: target outputs of the same images, (B, N, C); no gradient flows
                into them (they are detached here).
            mask: (B, N), or any shape flattening to it (e.g. (B, H, W)); nonzero /
                True marks a masked patch. Only those rows enter the loss.

        Returns:
            The scalar loss, averaged over all masked patches of the batch.
        """
        if pred.dim() != 3 or pred.shape != target.shape:
            raise ValueError(f'pred and target must both be (B, N, C) and equal; got '
                             f'{tuple(pred.shape)} and {tuple(target.shape)}.')
        B, N, _ = pred.shape
        mask = mask.reshape(B, -1).bool()
        if mask.shape[1] != N:
            raise ValueError(
                f'mask has {mask.shape[1]} entries per image but there are {N} patch '
                f'tokens: give a patch-level mask (e.g. SimMIMMaskGenerator with '
                f'model_patch_size equal to the backbone patch size).')
        if not mask.any():
            raise ValueError('The mask marks no patch: the denoising contrastive loss '
                             'is defined over masked patches only; check the mask '
                             'generator (mask_ratio / num_masking_patches).')
        # float32 under mixed precision (half raised to float32; float64 kept)
        with autocast_disabled(pred.device):
            q = F.normalize(upcast_half(pred), dim=-1)
            k = F.normalize(upcast_half(target.detach()), dim=-1)
            logits = torch.bmm(q, k.transpose(1, 2)) / self.temperature  # (B, N, N)
            logits = logits[mask]  # (M, N): rows of masked positions only
            labels = torch.arange(N, device=pred.device).expand(B, N)[mask]  # (M,)
            return self.loss_weight * F.cross_entropy(logits, labels)
