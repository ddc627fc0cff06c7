"""MMPretrain's NonLinearNeck applied to every token of a sequence (the ConMIM
projector)."""
from typing import Tuple

import torch
from mmpretrain.models.necks import NonLinearNeck
from mmpretrain.registry import MODELS


@MODELS.register_module()
class TokenNonLinearNeck(NonLinearNeck):
    """A per-token projector: ``NonLinearNeck`` on (B, L, C) token sequences.

    Every token goes through the same fc-bn-[relu-fc-bn] MLP; the BatchNorm statistics
    are taken over all ``B * L`` tokens (over all processes with ``SyncBN``). ConMIM's
    projector is ``num_layers=3, with_bias=False, with_last_bias=False,
    with_last_bn=True, with_last_bn_affine=False``:
    Linear(D, 4096) - BN - ReLU - Linear(4096, 4096) - BN - ReLU - Linear(4096, 256) -
    BN(affine=False).

    All arguments are those of :class:`mmpretrain.models.necks.NonLinearNeck`, except
    ``with_avg_pool``, which is always False (tokens are projected, not pooled).
    """

    def __init__(self, *args, **kwargs) -> None:
        if kwargs.pop('with_avg_pool', False):
            raise ValueError('TokenNonLinearNeck projects every token; with_avg_pool '
                             'must be False (use NonLinearNeck to pool).')
        super().__init__(*args, with_avg_pool=False, **kwargs)

    def forward(self, x: Tuple[torch.Tensor]) -> Tuple[torch.Tensor]:
        """Project every token.

        Args:
            x: a 1-tuple holding tokens of shape (B, L, C).

        Returns:
            A 1-tuple holding projections of shape (B, L, out_channels).
        """
        if len(x) != 1 or x[0].dim() != 3:
            raise ValueError(
                'TokenNonLinearNeck expects a 1-tuple with one (B, L, C) '
                'tensor (a backbone with out_type="raw" and one out index).')
        tokens = x[0]
        B, L, C = tokens.shape
        out = super().forward((tokens.reshape(B * L, C), ))[0]
        return (out.reshape(B, L, -1), )
