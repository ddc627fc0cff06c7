"""Optimizer wrappers and their constructors, registered in MMEngine's root registry."""
from .layer_decay_optim_wrapper_constructor import \
    BackboneLayerDecayOptimWrapperConstructor
from .mixed_precision_optim_wrapper import (PRECISIONS, MixedPrecisionOptimWrapper,
                                            set_precision)

__all__ = [
    'BackboneLayerDecayOptimWrapperConstructor', 'MixedPrecisionOptimWrapper',
    'PRECISIONS', 'set_precision'
]
