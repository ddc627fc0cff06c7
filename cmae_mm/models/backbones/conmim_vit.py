"""The ConMIM encoder: MMPretrain's ``BEiTPretrainViT`` with SDPA attention
(:mod:`cmae_mm.models.utils.attention`)."""
from mmpretrain.models import BEiTPretrainViT
from mmpretrain.registry import MODELS

from ..utils.attention import BEiTSDPAMixin


@MODELS.register_module()
class ConMIMViT(BEiTSDPAMixin, BEiTPretrainViT):
    """ConMIM's encoder: MMPretrain's ``BEiTPretrainViT`` with SDPA attention.

    ``mmpretrain/models/selfsup/beit.py``: ``forward(x, mask)`` replaces the masked
    patch tokens by ``mask_token`` (``mask`` ``(B, h, w)``; None: no masking) and
    returns a tuple of ``(B, 1 + h * w, C)`` token maps (``out_type='raw'``).

    Args:
        use_sdpa (bool): attention through ``F.scaled_dot_product_attention``
            (:class:`~cmae_mm.models.utils.BEiTAttentionSDPA`); False is
            ``BEiTPretrainViT`` itself. Defaults to True.
        **kwargs: the ``BEiTPretrainViT`` arguments (``arch``, ``img_size``,
            ``use_shared_rel_pos_bias``, ``layer_scale_init_value``, ...).
    """
