"""The CMAE feature decoder."""
from typing import List, Optional, Union

from mmpretrain.models import MAEPretrainDecoder
from mmpretrain.registry import MODELS


@MODELS.register_module()
class CMAEFeatureDecoder(MAEPretrainDecoder):
    """Feature decoder of CMAE (Huang et al., TPAMI 2024, arXiv 2207.13532).

    The structure of MAE's pixel decoder (Linear to ``decoder_embed_dim``, mask
    tokens restored to their positions, sin-cos position embedding, transformer
    blocks, LayerNorm, Linear) with its own weights, **2 blocks** by default, and
    a final Linear that outputs the **encoder width** (``embed_dim``) instead of
    ``patch_size**2 * 3`` pixels. CMAE's online image representation is the
    mean of its output tokens over all positions (visible and masked; the cls
    token is already dropped by :class:`MAEPretrainDecoder`).

    ``forward(x (B, 1 + L_vis, embed_dim), ids_restore (B, L))`` returns
    ``(B, L, embed_dim)``.

    Args:
        embed_dim (int): Encoder width; also the output width. Defaults to 768.
        decoder_depth (int): Number of transformer blocks. Defaults to 2.
        **kwargs: Other arguments of :class:`MAEPretrainDecoder`.
    """

    def __init__(self,
                 embed_dim: int = 768,
                 decoder_depth: int = 2,
                 predict_feature_dim: Optional[int] = None,
                 init_cfg: Optional[Union[List[dict], dict]] = None,
                 **kwargs) -> None:
        super().__init__(
            embed_dim=embed_dim,
            decoder_depth=decoder_depth,
            predict_feature_dim=predict_feature_dim or embed_dim,
            init_cfg=init_cfg,
            **kwargs)
