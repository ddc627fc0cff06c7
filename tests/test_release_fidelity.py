"""The recipe details of the official releases (docs/release_differences.md):
initialisation tensor by tensor, BatchNorm eps, weight-decay groups, seed.

The release rules are restated here from their source:
- CMAE (github.com/ZhichengHuang/CMAE): ``_init_weights`` of
  cmae/models/backbones/cmae_vit.py and cmae/models/necks/mae_neck.py -- every Linear
  Xavier-uniform (|w| <= sqrt(6 / (fan_in + fan_out)), std = bound / sqrt(3)) with
  zero bias, LayerNorm 1 / 0; the projector and predictor (NonLinearNeck) keep
  PyTorch's Linear init (kaiming-uniform: |w| <= 1 / sqrt(fan_in), bias likewise),
  BatchNorm 1 / 0 with eps 1e-6.
- ConMIM (github.com/TencentARC/ConMIM): ``_init_weights`` and ``fix_init_weight`` of
  modeling_pretrain.py -- Linear / Conv2d weights from N(0, 0.02) truncated at +-0.02
  (std = 0.02 * 0.5396 = 0.01079), zero biases, LayerNorm 1 / 0, cls / mask tokens
  likewise, then attention proj and fc2 of block i divided by sqrt(2 i).
"""
import math
import os.path as osp

import pytest
import torch
from torch import nn

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# std of a standard normal truncated to [-1, 1]
TRUNC1_STD = math.sqrt(1 - 2 * math.exp(-0.5) / math.sqrt(2 * math.pi) /
                       (math.erf(1 / math.sqrt(2))))


@pytest.fixture(scope='module')
def registry():
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import cmae_mm  # noqa: F401
    init_default_scope('mmpretrain')
    return MODELS


def build(registry, config, **overrides):
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    cfg = Config.fromfile(osp.join(REPO, config))
    cfg.model.update(overrides)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(registry.build(cfg.model))
    model.init_weights()
    return model, cfg


def assert_uniform(w, bound, name):
    assert w.abs().max() <= bound * (1 + 1e-6), name
    if w.numel() >= 1000:  # std of U(-b, b) is b / sqrt(3)
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05), name


CMAE_CFG = 'configs/pretrain/cmae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'
CONMIM_CFG = 'configs/pretrain/conmim_vit-small-p16_8xb256-amp-coslr-300e_in1k.py'


def test_cmae_initialisation_matches_the_release(registry):
    # ViT-S width keeps this fast; the rules do not depend on the width
    model, _ = build(registry, CMAE_CFG)
    checked = 0
    for part in ('backbone', 'neck', 'feature_decoder'):
        for name, m in getattr(model, part).named_modules():
            full = f'{part}.{name}'
            if isinstance(m, nn.Linear):
                fan_out, fan_in = m.weight.shape
                assert_uniform(m.weight, math.sqrt(6 / (fan_in + fan_out)), full)
                assert m.bias is None or torch.all(m.bias == 0), full  # FFN too
                checked += 1
            elif isinstance(m, nn.LayerNorm):
                assert torch.all(m.weight == 1) and torch.all(m.bias == 0), full
    assert checked == 12 * 4 + (1 + 8 * 4 + 1) + (1 + 2 * 4 + 1)
    # projector and predictor: PyTorch's default Linear init, BN 1 / 0, eps 1e-6
    for part in (model.projector, model.contrastive_head.predictor):
        for name, m in part.named_modules():
            if isinstance(m, nn.Linear):
                bound = 1 / math.sqrt(m.weight.shape[1])
                assert_uniform(m.weight, bound, name)
                if m.bias is not None:
                    assert m.bias.abs().max() <= bound and m.bias.abs().max() > 0
            elif isinstance(m, nn.BatchNorm1d):
                assert m.eps == 1e-6
                assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    # the target starts as the online encoder and projector, tensor for tensor
    online = dict(model.backbone.state_dict(prefix='0.'))
    online.update(model.projector.state_dict(prefix='1.'))
    for k, v in model.target_encoder.module.state_dict().items():
        assert torch.equal(v, online[k]), k
    # sin-cos position embeddings and N(0, 0.02) cls token are MAE's, untouched
    assert not model.backbone.pos_embed.requires_grad
    assert model.backbone.cls_token.std().item() == pytest.approx(0.02, rel=0.3)


def test_cmae_init_option_off_keeps_mmpretrain_init(registry):
    model, _ = build(registry, CMAE_CFG, release_init=False)
    fc1_bias = model.backbone.layers[0].ffn.layers[0][0].bias
    # MMPretrain's TransformerEncoderLayer: FFN biases N(0, 1e-6), not 0
    assert not torch.all(fc1_bias == 0) and fc1_bias.abs().max() < 1e-4


def test_conmim_initialisation_matches_the_release(registry):
    model, _ = build(registry, CONMIM_CFG)
    std = 0.02
    proj = {f'layers.{i}.attn.proj.weight': i + 1 for i in range(12)}
    proj.update({f'layers.{i}.ffn.layers.1.weight': i + 1 for i in range(12)})
    checked = 0
    for prefix, part in (('backbone', model.backbone), ('neck', model.neck)):
        for name, p in part.named_parameters():
            full = f'{prefix}.{name}'
            if name.endswith('weight') and p.dim() >= 2:  # Linear and Conv2d
                scale = math.sqrt(2.0 * proj[name]) if name in proj else 1.0
                w = p * scale
                assert w.abs().max() <= std * (1 + 1e-6), full
                if w.numel() >= 1000:
                    assert w.std().item() == pytest.approx(
                        std * TRUNC1_STD, rel=0.05), full
                checked += 1
            elif name.endswith('bias') and 'ln' not in name and 'bn' not in name:
                assert torch.all(p == 0), full
        for name, m in part.named_modules():
            if isinstance(m, nn.LayerNorm):
                assert torch.all(m.weight == 1) and torch.all(m.bias == 0), name
    assert checked == 1 + 12 * 4 + 3  # patch embed, 4 per block, projector
    for name in ('cls_token', 'mask_token'):
        token = getattr(model.backbone, name)
        assert token.abs().max() <= std * (1 + 1e-6), name
    # layer scale and the shared relative position table as released
    assert torch.all(model.backbone.layers[3].gamma_1 == 0.1)
    assert torch.all(model.backbone.rel_pos_bias.relative_position_bias_table == 0)
    for k, v in model.target_encoder.module.state_dict().items():
        online = (model.backbone if k.startswith('0.') else model.neck).state_dict()
        assert torch.equal(v, online[k[2:]]), k


def test_weight_decay_groups_follow_the_release(registry):
    """Release custom keys: no decay on 'ln', 'bias', pos_embed, mask_token,
    cls_token -- so the projector / predictor BatchNorm weights ARE decayed."""
    from mmengine.optim import build_optim_wrapper
    model, cfg = build(registry, CMAE_CFG)
    # only the parameter groups matter here: a plain wrapper with the recipe's
    # optimizer and paramwise_cfg
    optim_cfg = dict(cfg.optim_wrapper, type='OptimWrapper')
    optim_cfg.pop('loss_scale', None)
    optim_cfg.pop('dtype', None)
    wrapper = build_optim_wrapper(model, optim_cfg)
    decay = {
        id(p): g['weight_decay']
        for g in wrapper.optimizer.param_groups
        for p in g['params']
    }
    named = dict(model.named_parameters())
    assert decay[id(named['projector.bn0.weight'])] == 0.05
    assert decay[id(named['contrastive_head.predictor.bn0.weight'])] == 0.05
    assert decay[id(named['projector.bn0.bias'])] == 0.0
    assert decay[id(named['backbone.layers.0.ln1.weight'])] == 0.0
    assert decay[id(named['backbone.cls_token'])] == 0.0
    assert decay[id(named['backbone.layers.0.attn.qkv.weight'])] == 0.05


def test_recipe_seed_and_hooks():
    from mmengine.config import Config
    for name in ('cmae_vit-b.py', 'cmae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'):
        cfg = Config.fromfile(osp.join(REPO, 'configs/pretrain', name))
        assert cfg.randomness == dict(seed=60, diff_rank_seed=True)  # released seed
        assert dict(type='TargetUpdateHook') in cfg.custom_hooks
        assert cfg.model.target_cls is True and cfg.model.release_init is True
