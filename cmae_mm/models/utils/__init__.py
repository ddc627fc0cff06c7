from .attention import BEiTAttentionSDPA, BEiTSDPAMixin
from .compile import compile_blocks
from .precision import (HALF_DTYPES, autocast_disabled, route_attention,
                        scaled_dot_product_attention, upcast_half)
from .release_init import (release_trunc_normal_init, release_xavier_init,
                           rescale_block_outputs)
from .target_encoder import MomentumTarget, MomentumTargetSelfSupervisor

__all__ = [
    'HALF_DTYPES', 'autocast_disabled', 'upcast_half', 'route_attention',
    'scaled_dot_product_attention', 'MomentumTarget', 'MomentumTargetSelfSupervisor',
    'release_xavier_init', 'release_trunc_normal_init', 'rescale_block_outputs',
    'BEiTAttentionSDPA', 'BEiTSDPAMixin', 'compile_blocks'
]
