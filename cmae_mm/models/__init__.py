"""Pretraining models (MMPretrain registries): the algorithms and their parts."""
from . import algorithms, backbones, losses, necks, utils  # noqa: F401
