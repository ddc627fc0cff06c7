"""The pretrained encoders as MMSegmentation backbones (needs ``cmae_mm[seg]``).

Registers :class:`~cmae_mm.transfer.backbones.TransferViT` (CMAE / MAE encoders) and
:class:`~cmae_mm.transfer.backbones.TransferBEiTViT` (ConMIM / BEiT encoders) into
MMSegmentation's registry. With ``out_type='featmap'``, ``final_norm=False`` and
``out_indices=(3, 5, 7, 11)`` they return the ``(B, C, H/16, W/16)`` maps of blocks
4/6/8/12 that ``Feature2Pyramid`` rescales (MMSegmentation's
``configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py``), and their
``get_layer_depth`` drives
:class:`~cmae_mm.engine.optimizers.BackboneLayerDecayOptimWrapperConstructor`.

MMSegmentation's own ``MAE`` backbone is not used: it loads checkpoints non-strictly
(a wrong prefix loads nothing and is only logged), and it adds layer-scale parameters
that the CMAE encoder does not have (docs/transfer.md).
"""
from mmseg.registry import MODELS

from ..backbones import TransferBEiTViT, TransferViT

MODELS.register_module(module=TransferViT)
MODELS.register_module(module=TransferBEiTViT)
