"""Float32 regions inside mixed-precision (autocast) training."""
from contextlib import contextmanager
from typing import Optional

import torch
import torch.nn.functional as F
from mmpretrain.models.utils import MultiheadAttention
from torch import nn

#: the half-precision floating dtypes that the float32 islands raise to float32
HALF_DTYPES = (torch.float16, torch.bfloat16)


def upcast_half(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is float16 / bfloat16, else ``x`` itself (float32,
    float64 and integer tensors are left alone).

    The cast of the float32 islands (contrastive losses, the momentum-target EMA):
    ``x.float()`` would also down-cast a float64 model (a numerical check) and then
    meet float64 parameters, e.g. ``mat1 and mat2 must have the same dtype``."""
    return x.float() if x.dtype in HALF_DTYPES else x


@contextmanager
def autocast_disabled(device: torch.device):
    """Autocast off for ``device``'s type, so that float32 (float64) inputs give
    float32 (float64) results; with :func:`upcast_half` on the inputs, a float32
    island. Used for the contrastive losses: autocast computes ``einsum`` / ``bmm``
    (the logits) in bfloat16 on CPUs, float16 on GPUs, even from float32 inputs."""
    with torch.autocast(device_type=torch.device(device).type, enabled=False):
        yield


def scaled_dot_product_attention(query: torch.Tensor,
                                 key: torch.Tensor,
                                 value: torch.Tensor,
                                 attn_mask: Optional[torch.Tensor] = None,
                                 dropout_p: float = 0.,
                                 scale: Optional[float] = None) -> torch.Tensor:
    """``F.scaled_dot_product_attention``; on a CPU under bfloat16 autocast, computed
    in float32 where PyTorch would use its fused (flash) kernel.

    Args:
        query, key, value: ``(B, heads, N, C / heads)``.
        attn_mask: additive bias broadcastable to ``(B, heads, N, N)``, or None.

    Returns:
        ``(B, heads, N, C / heads)`` in ``query``'s dtype.

    PyTorch's CPU flash-attention kernel trains slower in bfloat16 than in float32
    (torch 2.14, 2 cores, forward + backward: 52 vs 37 ms at ``(8, 12, 197, 64)``,
    12.9 vs 3.6 ms at ``(8, 12, 50, 64)``; docs/performance.md). So on a CPU with
    bfloat16 inputs under autocast, query, key, value (and the bias) are cast to
    float32 and the output back to bfloat16: float32 attention, as precise as or more
    than autocast's. A bias that needs a gradient makes PyTorch use its math kernel,
    which is faster in bfloat16: that case, GPUs, float32 and float16 call
    ``F.scaled_dot_product_attention`` unchanged.
    """
    if (query.device.type == 'cpu' and query.dtype == torch.bfloat16
            and torch.is_autocast_enabled('cpu')
            and (attn_mask is None or not attn_mask.requires_grad
                 or not torch.is_grad_enabled())):
        with autocast_disabled(query.device):
            out = F.scaled_dot_product_attention(
                query.float(),
                key.float(),
                value.float(),
                attn_mask=None if attn_mask is None else attn_mask.float(),
                dropout_p=dropout_p,
                scale=scale)
        return out.to(query.dtype)
    return F.scaled_dot_product_attention(
        query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)


def route_attention(model: nn.Module) -> nn.Module:
    """Make every MMPretrain ``MultiheadAttention`` in ``model`` that calls
    ``F.scaled_dot_product_attention`` call :func:`scaled_dot_product_attention`
    (its ``scaled_dot_product_attention`` attribute); same parameters, same float32
    results. Returns ``model``."""
    for module in model.modules():
        if isinstance(module, MultiheadAttention) and \
                module.scaled_dot_product_attention is F.scaled_dot_product_attention:
            module.scaled_dot_product_attention = scaled_dot_product_attention
    return model
