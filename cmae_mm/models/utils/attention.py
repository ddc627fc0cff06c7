"""BEiT-style ViT attention through ``F.scaled_dot_product_attention`` (SDPA).

Shared by a pretraining backbone (:class:`~cmae_mm.models.backbones.ConMIMViT`) and a
downstream one (:class:`~cmae_mm.transfer.backbones.TransferBEiTViT`).

MMPretrain's ``BEiTAttention`` (``mmpretrain/models/utils/attention.py``) computes
``softmax(q k^T * scale + relative_position_bias) v`` by hand, materialising the
``(B, heads, N, N)`` logits and their softmax. :class:`BEiTAttentionSDPA` hands the same
relative position bias to SDPA as its additive float ``attn_mask``, so that PyTorch
picks a fused kernel (CPU flash attention, CUDA memory-efficient attention). It adds no
parameter, buffer or ``__init__``: only ``forward`` differs, the outputs are equal up
to float rounding and the state dict is MMPretrain's, key for key.

:class:`BEiTSDPAMixin` gives a BEiT backbone (MMPretrain's ``BEiTViT`` or
``BEiTPretrainViT``) a ``use_sdpa`` switch: once the backbone has built its
``BEiTTransformerEncoderLayer`` blocks (``mmpretrain/models/backbones/beit.py``, which
always instantiates ``BEiTAttention``), each block's ``attn`` is re-classed to
:class:`BEiTAttentionSDPA`. Re-classing keeps every tensor as built and draws no
random numbers, so a seeded build initialises exactly as MMPretrain's class does.
Both relative position paths go through the mask: a block's own table
(``use_rel_pos_bias=True``, fine-tuning) and the backbone's shared table
(``use_shared_rel_pos_bias=True``, ConMIM/BEiT pretraining), which MMPretrain computes
once per forward and passes to every block as ``rel_pos_bias``.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from mmpretrain.models.utils.attention import BEiTAttention

from .precision import scaled_dot_product_attention


class BEiTAttentionSDPA(BEiTAttention):
    """MMPretrain's ``BEiTAttention`` computed by ``F.scaled_dot_product_attention``.

    Same arguments, parameters and buffers as ``BEiTAttention`` (``qkv``, ``q_bias`` /
    ``v_bias``, ``relative_position_bias_table``, ``relative_position_index``,
    ``proj``); the bias terms MMPretrain adds to the logits are summed into SDPA's
    additive ``attn_mask`` and ``scale`` is the module's ``scale``. Attention dropout
    (``attn_drop.p``) applies in training only, as ``nn.Dropout`` does. (MMPretrain's
    ``BEiTTransformerEncoderLayer`` passes ``attn_drop=``, which ``BEiTAttention``
    ignores, so in BEiT backbones that probability is 0 in both implementations.)
    """

    def relative_position_bias(self) -> Optional[torch.Tensor]:
        """The block's own bias ``(heads, N, N)`` with ``N = Wh * Ww + 1``, or None
        without a table (the indexing of ``BEiTAttention.forward``)."""
        if self.relative_position_bias_table is None:
            return None
        n = self.window_size[0] * self.window_size[1] + 1
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1)

    def forward(self,
                x: torch.Tensor,
                rel_pos_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x: tokens ``(B, N, C)`` (``B`` may count windows).
            rel_pos_bias: a shared relative position bias ``(heads, N, N)`` added to
                the block's own (if any), or None.

        Returns:
            ``(B, N, C)``.
        """
        B, N, C = x.shape
        if self.bias == 'qv_bias':
            k_bias = torch.zeros_like(self.v_bias, requires_grad=False)
            qkv_bias = torch.cat((self.q_bias, k_bias, self.v_bias))
            qkv = F.linear(input=x, weight=self.qkv.weight, bias=qkv_bias)
        else:
            qkv = self.qkv(x)
        # q, k, v: (B, heads, N, C / heads)
        q, k, v = qkv.reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1,
                                                                   4).unbind(0)
        bias = self.relative_position_bias()
        if rel_pos_bias is not None:
            bias = rel_pos_bias if bias is None else bias + rel_pos_bias
        if bias is not None:
            # in the dtype of q (autocast makes q half precision); (heads, N, N) ->
            # (1, heads, N, N), the 4-d mask the fused kernels take
            bias = bias.to(q.dtype)
            if bias.dim() == 3:
                bias = bias.unsqueeze(0)
        x = scaled_dot_product_attention(  # F.scaled_dot_product_attention, see there
            q,
            k,
            v,
            attn_mask=bias,
            dropout_p=self.attn_drop.p if self.training else 0.,
            scale=self.scale)
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class BEiTSDPAMixin:
    """``use_sdpa`` for a BEiT backbone (MMPretrain ``BEiTViT`` and subclasses).

    Args:
        use_sdpa (bool): re-class every block's ``BEiTAttention`` to
            :class:`BEiTAttentionSDPA` after the backbone is built. Same tensors
            and state dict; False keeps MMPretrain's hand-written attention.
            Defaults to True.
        **kwargs: the backbone's own arguments.
    """

    def __init__(self, *args, use_sdpa: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.use_sdpa = use_sdpa
        if use_sdpa:
            for layer in self.layers:
                if type(layer.attn) is not BEiTAttention:
                    raise TypeError(f'use_sdpa expects MMPretrain BEiTAttention '
                                    f'blocks, got {type(layer.attn).__name__}.')
                layer.attn.__class__ = BEiTAttentionSDPA
