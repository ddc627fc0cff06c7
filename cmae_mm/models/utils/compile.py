"""Compile a model's transformer blocks in place ("regional compilation").

MMEngine's ``compile=True`` wraps the whole ``train_step`` (optimizer step included)
in ``torch.compile``, which Dynamo cannot trace with MMEngine's ``ConfigDict`` param
groups (docs/performance.md, "Compiled blocks"). Compiling each transformer block
instead leaves the optimizer, the hooks and the masking eager and compiles where the
time goes. Blocks of one shape share their compiled code (Dynamo inlines the
modules, the parameters are graph inputs), so an encoder of N identical blocks
compiles once: PyTorch's recipe "Reducing torch.compile cold start compilation time
with regional compilation" (pytorch.org/tutorials/recipes/regional_compilation.html).
"""
from collections import Counter
from typing import List, Tuple, Type

import numpy as np
from mmengine.logging import MMLogger
from mmpretrain.models.backbones.vision_transformer import TransformerEncoderLayer
from mmpretrain.models.backbones.vit_sam import \
    TransformerEncoderLayer as SAMTransformerEncoderLayer
from torch import nn

#: Block types compiled, subclasses included: MMPretrain's ViT layer (``MAEViT`` /
#: ``CMAEViT`` encoders, ``MAEPretrainDecoder`` / ``CMAEFeatureDecoder`` blocks,
#: ``TransferViT``; its subclass ``BEiTTransformerEncoderLayer``: ``ConMIMViT``,
#: ``TransferBEiTViT``) and ``ViTSAM``'s layer (``ViTDetLayer`` of ViTDet).
BLOCK_TYPES: Tuple[Type[nn.Module],
                   ...] = (TransformerEncoderLayer, SAMTransformerEncoderLayer)


def _numpy_scalars_to_python(block: nn.Module) -> None:
    """Turn the numpy ``drop_prob`` of mmcv's ``DropPath`` into a Python float (the
    same value). MMPretrain's backbones take it from ``np.linspace`` (the drop-path
    schedule); Dynamo traces ``drop_prob == 0.`` on a numpy scalar as an array
    comparison and breaks the graph there, 5 times per block."""
    for module in block.modules():
        if isinstance(getattr(module, 'drop_prob', None), np.generic):
            module.drop_prob = float(module.drop_prob)


def compile_blocks(model: nn.Module, **compile_kwargs) -> List[str]:
    """``torch.compile`` every transformer block of ``model`` in place.

    Each block of a type in :data:`BLOCK_TYPES` is compiled with
    ``nn.Module.compile(**compile_kwargs)``, which keeps the module and its
    state-dict names (no ``_orig_mod.`` prefix): checkpoints, the momentum target's
    update and the optimizer's parameters are unchanged. The momentum target's
    blocks are compiled too. A block's input is ``(B, N, C)`` tokens; its output
    has the same shape.

    Args:
        model (nn.Module): The model, before DDP wrapping (a wrapped one works too;
            its names then start with ``module.``).
        **compile_kwargs: Arguments of ``torch.compile``, e.g. ``mode='max-autotune',
            dynamic=False``.

    Returns:
        list[str]: The qualified names of the compiled blocks.

    Raises:
        TypeError: ``model`` has no such block (nothing would be compiled).
    """
    names = [name for name, m in model.named_modules() if isinstance(m, BLOCK_TYPES)]
    if not names:
        raise TypeError(
            f'compile_blocks: {type(model).__name__} has no transformer block to '
            f'compile (none of {[t.__module__ + "." + t.__name__ for t in BLOCK_TYPES]}'
            f' or their subclasses). Set compile_blocks=False (or drop '
            f'--compile-blocks) for this model, or add its block type to '
            f'cmae_mm.models.utils.compile.BLOCK_TYPES.')
    for name in names:
        block = model.get_submodule(name)
        _numpy_scalars_to_python(block)
        block.compile(**compile_kwargs)
    counts = Counter(name.removeprefix('module.').split('.')[0] for name in names)
    MMLogger.get_current_instance().info(
        f'compile_blocks: {len(names)} blocks compiled in place '
        f'({", ".join(f"{k}: {v}" for k, v in counts.items())}); '
        f'torch.compile kwargs {compile_kwargs or "{}"}; the first iterations '
        f'compile.')
    return names
