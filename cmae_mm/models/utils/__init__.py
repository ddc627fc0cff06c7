from .target_encoder import update_target_encoder

__all__ = ['update_target_encoder']
