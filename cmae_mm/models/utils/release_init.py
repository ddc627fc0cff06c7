"""The weight initialisations of the official releases, applied module by module.

MMPretrain's building blocks initialise themselves differently from the releases (its
``TransformerEncoderLayer.init_weights`` gives FFN layers Xavier weights and N(0, 1e-6)
biases after any config ``init_cfg`` ran). The algorithms apply these functions at the
end of their ``init_weights`` so that the released initialisation is what training
starts from (docs/release_differences.md).
"""
import math

import torch
from mmengine.model.weight_init import trunc_normal_
from torch import nn


@torch.no_grad()
def release_xavier_init(module: nn.Module) -> None:
    """CMAE release: ``_init_weights`` of ``cmae/models/backbones/cmae_vit.py`` and
    ``cmae/models/necks/mae_neck.py`` (MAE's): every ``nn.Linear`` Xavier-uniform with
    zero bias, every ``nn.LayerNorm`` weight 1, bias 0. Other tensors (position
    embeddings, tokens, the patch convolution) are left as they are."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@torch.no_grad()
def release_trunc_normal_init(module: nn.Module, std: float = 0.02) -> None:
    """ConMIM release (``modeling_pretrain.py``, BEiT's): ``nn.Linear`` and
    ``nn.Conv2d`` weights from a normal of std ``std`` truncated at +-1 std (its
    ``trunc_normal_`` passes ``a=-std, b=std``), zero biases; ``nn.LayerNorm`` 1 / 0;
    BatchNorm keeps PyTorch's 1 / 0."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            trunc_normal_(m.weight, std=std, a=-std, b=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def rescale_block_outputs(layers: nn.ModuleList) -> None:
    """BEiT's ``fix_init_weight``: the output projections of block ``i`` (1-based)
    divided by ``sqrt(2 i)`` (attention ``proj`` and the FFN's second Linear)."""
    for i, layer in enumerate(layers, 1):
        layer.attn.proj.weight.data.div_(math.sqrt(2.0 * i))
        layer.ffn.layers[1].weight.data.div_(math.sqrt(2.0 * i))
