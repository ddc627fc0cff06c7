"""Downstream backbones for MMPretrain classification (also used by segmentation)."""
from .vit import TransferBEiTViT, TransferViT

__all__ = ['TransferViT', 'TransferBEiTViT']
