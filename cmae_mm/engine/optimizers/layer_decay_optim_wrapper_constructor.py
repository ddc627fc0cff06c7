"""Layer-wise learning-rate decay for segmentors and detectors with a ViT backbone.

MMPretrain's ``LearningRateDecayOptimWrapperConstructor`` implements the decay but asks
the *model* for ``get_layer_depth``, which classifiers have and segmentors and detectors
lack; MMSegmentation's ``LayerDecayOptimizerConstructor`` only accepts backbones whose
class name contains ``'MAE'`` or ``'BEiT'`` (``mmseg/engine/optimizers/
layer_decay_optimizer_constructor.py``), and MMDetection 3.3.0's only knows ConvNeXt.
This subclass hands MMPretrain's constructor the backbone's
``get_layer_depth``: patch and position embeddings are depth 0, block ``i`` is depth
``i + 1``, everything outside the backbone (neck, heads) and its final norms is depth
``L + 1``. With ``L`` blocks and decay ``r``

    lr(param) = base_lr * r ** (L + 1 - depth(param)),

as BEiT's and ViTDet's ``get_vit_lr_decay_rate``. Registered in MMEngine's root
registry, so MMSegmentation, MMDetection and MMPretrain configs all find it without
importing either framework here.
"""
from functools import partial
from typing import Callable, List, Optional

from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor
from torch import nn


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class BackboneLayerDecayOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor
                                                ):
    """``LearningRateDecayOptimWrapperConstructor`` for ``model.backbone`` depths.

    ``paramwise_cfg`` is that of MMPretrain's constructor (``layer_decay_rate``,
    ``flat_decay_mult``, ``custom_keys`` with ``decay_mult``, ...).
    """

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   get_layer_depth: Optional[Callable] = None,
                   **kwargs) -> None:
        if get_layer_depth is None and not hasattr(module, 'get_layer_depth'):
            backbone = getattr(module, 'backbone', None)
            if not hasattr(backbone, 'get_layer_depth'):
                raise TypeError(
                    f'Layer-wise lr decay needs `get_layer_depth` on the model '
                    f'({type(module).__name__}) or on its backbone '
                    f'({type(backbone).__name__}); use a backbone that defines it: '
                    f'TransferViT / TransferBEiTViT (segmentation), ViTDet (detection).'
                )
            get_layer_depth = partial(backbone.get_layer_depth, prefix='backbone.')
        super().add_params(params, module, prefix, get_layer_depth, **kwargs)
