"""The pretrained encoders as MMSegmentation backbones.

Registers :class:`~cmae_mm.utils.transfer_vit.TransferViT` (CMAE / MAE encoders) and
:class:`~cmae_mm.utils.transfer_vit.TransferBEiTViT` (ConMIM / BEiT encoders) into
MMSegmentation's registry. With ``out_type='featmap'``, ``final_norm=False`` and
``out_indices=(3, 5, 7, 11)`` they return the ``(B, C, H/16, W/16)`` maps of blocks
4/6/8/12 that ``Feature2Pyramid`` rescales (SPEC §3), and their ``get_layer_depth``
drives :class:`~cmae_mm.engine.layer_decay_optim_wrapper_constructor.
BackboneLayerDecayOptimWrapperConstructor`.

MMSegmentation's own ``MAE`` backbone is not used: its checkpoint loading is the
silent non-strict trap of SPEC §3, and it adds layer-scale parameters that the CMAE
encoder does not have.
"""
from mmseg.registry import MODELS

from cmae_mm.utils.transfer_vit import TransferBEiTViT, TransferViT

MODELS.register_module(module=TransferViT)
MODELS.register_module(module=TransferBEiTViT)
