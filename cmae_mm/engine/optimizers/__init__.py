"""Optimizer-wrapper constructors, registered in MMEngine's root registry."""
from .layer_decay_optim_wrapper_constructor import \
    BackboneLayerDecayOptimWrapperConstructor

__all__ = ['BackboneLayerDecayOptimWrapperConstructor']
