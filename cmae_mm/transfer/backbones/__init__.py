"""Downstream backbones that need MMPretrain only: registered in MMPretrain
(classification) and, by :mod:`cmae_mm.transfer.seg`, in MMSegmentation."""
from .vit import TransferBEiTViT, TransferViT

__all__ = ['TransferViT', 'TransferBEiTViT']
