"""Hooks, registered in MMEngine's root ``HOOKS`` registry (found from any scope)."""
from .fp16_compression_hook import Fp16CompressionHook
from .target_update_hook import TargetUpdateHook

__all__ = ['Fp16CompressionHook', 'TargetUpdateHook']
