"""Figures of what a pretrained encoder does: masked-image reconstructions (CMAE, MAE)
and ConMIM's intra-image patch look-up."""
from .figures import (center_crop, draw_rows, load_images, lookup_figure,
                      masked_reconstruction, patch_similarity, reconstruction_figure)

__all__ = [
    'center_crop', 'draw_rows', 'load_images', 'lookup_figure', 'masked_reconstruction',
    'patch_similarity', 'reconstruction_figure'
]
