"""Hooks, registered in MMEngine's root ``HOOKS`` registry (found from any scope)."""
from .data_fault_hook import DataFaultHook
from .fp16_compression_hook import Fp16CompressionHook
from .nonfinite_guard_hook import NonFiniteGuardHook
from .preemption_hook import PREEMPTED_EXIT_CODE, PreemptionHook
from .target_update_hook import TargetUpdateHook

__all__ = [
    'DataFaultHook', 'Fp16CompressionHook', 'NonFiniteGuardHook', 'PREEMPTED_EXIT_CODE',
    'PreemptionHook', 'TargetUpdateHook'
]
