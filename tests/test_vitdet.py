"""Unit tests of the ViTDet parts: backbone, checkpoint mapping, simple pyramid, layer
decay, fp16 gradient compression. Tiny models (the demo configs' ViT) on CPU."""
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import cmae_mm  # noqa: F401  (registers the modules)
from cmae_mm.engine.checkpoint import extract_encoder, load_state_dict_checked
from cmae_mm.transfer.det.vitdet import ViTDet, ViTDetLayer

TINY = dict(embed_dims=192, num_layers=4, num_heads=3, feedforward_channels=768)
GLOBAL = [1, 3]


def tiny_vitdet(img_size=128, window_size=4, **kwargs) -> ViTDet:
    return ViTDet(
        arch=dict(TINY, global_attn_indexes=GLOBAL),
        img_size=img_size,
        window_size=window_size,
        **kwargs)


def tiny_mae_encoder():
    """CMAE's online encoder architecture (MMPretrain MAEViT), pretrained at 224."""
    from mmpretrain.models import MAEViT
    torch.manual_seed(0)
    enc = MAEViT(arch=dict(TINY), img_size=224, patch_size=16)
    enc.init_weights()
    with torch.no_grad():  # make every tensor distinctive (LN weights start at 1)
        for p in enc.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return enc


def write_pretrain_checkpoint(path, online, target):
    """An MMEngine checkpoint with cmae_mm's pretraining key layout."""
    sd = {f'backbone.{k}': v for k, v in online.state_dict().items()}
    sd.update({
        f'target_encoder.module.0.{k}': v
        for k, v in target.state_dict().items()
    })
    sd['target_encoder.module.1.layers.0.weight'] = torch.randn(8, 192)  # projector
    torch.save({'meta': {'epoch': 1}, 'state_dict': sd}, path)
    return sd


def bicubic_grid(pos_embed, src, dst):
    """Independent resize: drop the cls entry, (1, C, h, w) bicubic, -> (1, H, W, C)."""
    C = pos_embed.shape[-1]
    grid = pos_embed[:, 1:].reshape(1, src, src, C).permute(0, 3, 1, 2)
    out = F.interpolate(
        grid.float(), size=(dst, dst), mode='bicubic', align_corners=False)
    return out.permute(0, 2, 3, 1)


def assert_encoder_loaded(backbone: ViTDet, enc_sd: dict, grid: int):
    """Every backbone tensor equals the checkpoint's (or its documented transform)."""
    sd = backbone.state_dict()
    n_layer_keys = 0
    for k, v in sd.items():
        if re.search(r'attn\.rel_pos_[hw]$', k):
            assert torch.equal(v, torch.zeros_like(v)), k
        elif k == 'pos_embed':
            torch.testing.assert_close(
                v, bicubic_grid(enc_sd['pos_embed'], 14, grid), rtol=0, atol=1e-6)
        else:
            assert torch.equal(v, enc_sd[k]), k  # same name in both architectures
            n_layer_keys += 1
    assert n_layer_keys == 2 + 12 * TINY['num_layers']


def test_vitdet_structure_and_output():
    model = tiny_vitdet(img_size=128, window_size=4, drop_path_rate=0.1)
    assert all(isinstance(layer, ViTDetLayer) for layer in model.layers)
    head_dims = 192 // 3
    for i, layer in enumerate(model.layers):
        is_global = i in GLOBAL
        assert layer.window_size == (0 if is_global else 4)
        side = 128 // 16 if is_global else 4
        assert layer.attn.rel_pos_h.shape == (2 * side - 1, head_dims)
        assert layer.attn.rel_pos_w.shape == (2 * side - 1, head_dims)
        # linearly increasing stochastic depth on both residual branches
        rate = 0.1 * i / 3
        assert layer.drop_path.drop_prob == pytest.approx(rate)
        assert layer.ffn.dropout_layer.drop_prob == pytest.approx(rate)
    assert model.pos_embed.shape == (1, 8, 8, 192)
    assert not hasattr(model, 'channel_reduction')  # SAM neck off
    model.eval()
    out = model(torch.randn(2, 3, 128, 96))
    assert isinstance(out, tuple) and len(out) == 1
    assert out[0].shape == (2, 192, 8, 6)


def test_vitdet_rejects_fixed_arguments():
    with pytest.raises(TypeError, match='out_channels'):
        tiny_vitdet(out_channels=256)
    with pytest.raises(KeyError, match='global_attn_indexes'):
        ViTDet(arch=dict(TINY))


def test_drop_path_on_both_branches():
    """With drop probability ~1 both residual branches vanish: the block is identity
    in training (ViTSAM's own block keeps its attention branch)."""
    from mmpretrain.models.backbones.vit_sam import TransformerEncoderLayer
    kwargs = dict(
        embed_dims=192,
        num_heads=3,
        feedforward_channels=768,
        drop_path_rate=1 - 1e-7,
        window_size=4,
        input_size=(8, 8),
        use_rel_pos=True)
    x = torch.randn(2, 8, 8, 192)
    ours = ViTDetLayer(**kwargs).train()
    torch.testing.assert_close(ours(x), x, rtol=0, atol=0)
    theirs = TransformerEncoderLayer(**kwargs).train()
    assert not torch.allclose(theirs(x), x)
    ours.eval()  # no drop in eval
    assert not torch.allclose(ours(x), x)


def test_adapt_and_checked_load_of_online_encoder():
    enc = tiny_mae_encoder()
    enc_sd = enc.state_dict()
    assert 'cls_token' in enc_sd and 'ln1.weight' in enc_sd  # dropped below
    backbone = tiny_vitdet(img_size=160, window_size=5)  # grid 10, from 14
    adapted = backbone.adapt_pretrained_state_dict(dict(enc_sd))
    assert set(adapted) == set(backbone.state_dict())  # complete, nothing extra
    load_state_dict_checked(backbone, adapted)
    assert_encoder_loaded(backbone, enc_sd, grid=10)


def test_pretrained_encoder_init_cfg_online_and_target(tmp_path):
    online, target = tiny_mae_encoder(), tiny_mae_encoder()
    with torch.no_grad():
        for p in target.parameters():
            p.mul_(-1)
    ckpt = str(tmp_path / 'cmae.pth')
    write_pretrain_checkpoint(ckpt, online, target)
    for which, enc in (('online', online), ('target', target)):
        backbone = tiny_vitdet(
            img_size=128,
            init_cfg=dict(type='PretrainedEncoder', checkpoint=ckpt, encoder=which))
        backbone.init_weights()  # ViTSAM's re-draw of pos_embed must not win
        assert_encoder_loaded(backbone, enc.state_dict(), grid=8)


def test_load_fails_naming_what_is_missing_or_unknown(tmp_path):
    online = tiny_mae_encoder()
    sd = {f'backbone.{k}': v for k, v in online.state_dict().items()}
    del sd['backbone.layers.2.attn.qkv.weight']
    backbone = tiny_vitdet()
    enc = backbone.adapt_pretrained_state_dict(extract_encoder(sd, 'online'))
    with pytest.raises(KeyError, match=r'layers\.2\.attn\.qkv\.weight'):
        load_state_dict_checked(backbone, enc)
    # a tensor the mapping does not know (layer scale) is an error, not a silent drop
    sd = {k: v for k, v in online.state_dict().items()}
    sd['layers.0.attn.gamma1.weight'] = torch.ones(192)
    with pytest.raises(KeyError, match='gamma1'):
        backbone.adapt_pretrained_state_dict(sd)
    # the wrong prefix loads nothing -> error (the non-strict `Pretrained` trap)
    path = str(tmp_path / 'plain.pth')
    torch.save({'state_dict': online.state_dict()}, path)
    bad = tiny_vitdet(init_cfg=dict(type='PretrainedEncoder', checkpoint=path))
    with pytest.raises(KeyError, match='backbone'):
        bad.init_weights()


def test_simple_fpn_levels():
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    from mmpretrain.models.utils.norm import LayerNorm2d
    init_default_scope('mmdet')  # as in a detection config: 'LN2d' is mmdet's
    neck = MODELS.build(
        dict(
            type='SimpleFPN',
            backbone_channel=192,
            in_channels=[48, 96, 192, 192],
            out_channels=32,
            num_outs=5,
            norm_cfg=dict(type='LN2d')))
    for conv in list(neck.lateral_convs) + list(neck.fpn_convs):
        assert isinstance(conv.norm, LayerNorm2d) and conv.conv.bias is None
    assert neck.lateral_convs[0].conv.kernel_size == (1, 1)
    assert neck.fpn_convs[0].conv.kernel_size == (3, 3)
    outs = neck((torch.randn(2, 192, 8, 12), ))
    # strides 4, 8, 16, 32, 64 of a 128x192 image
    assert [tuple(o.shape) for o in outs] == [(2, 32, 32, 48), (2, 32, 16, 24),
                                              (2, 32, 8, 12), (2, 32, 4, 6),
                                              (2, 32, 2, 3)]
    # LN2d normalises over channels at every position (before its identity affine)
    lat = neck.lateral_convs[2]
    y = lat(torch.randn(1, 192, 8, 12))
    torch.testing.assert_close(y.mean(1), torch.zeros(1, 8, 12), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match='in_channels'):
        MODELS.build(
            dict(
                type='SimpleFPN',
                backbone_channel=192,
                in_channels=[192, 384, 768, 768]))


def test_layer_decay_applies_per_block():
    from mmengine.optim import build_optim_wrapper
    from torch import nn

    class Detectorish(nn.Module):  # the constructor looks only at `.backbone`

        def __init__(self):
            super().__init__()
            self.backbone = tiny_vitdet()
            self.neck = nn.Conv2d(192, 8, 1)

    model = Detectorish()
    base_lr, rate, L = 1e-4, 0.7, TINY['num_layers']
    wrapper = build_optim_wrapper(
        model,
        dict(
            type='OptimWrapper',
            constructor='BackboneLayerDecayOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=base_lr, weight_decay=0.1),
            paramwise_cfg=dict(
                layer_decay_rate=rate,
                flat_decay_mult=0.0,
                custom_keys={'pos_embed': dict(decay_mult=0.0)})))
    by_param = {id(p): g for g in wrapper.optimizer.param_groups for p in g['params']}
    seen = 0
    for name, p in model.named_parameters():
        m = re.match(r'backbone\.layers\.(\d+)\.', name)
        depth = (
            int(m.group(1)) + 1 if m else 0 if name.startswith('backbone.') else L + 1)
        group = by_param[id(p)]
        assert group['lr'] == pytest.approx(base_lr * rate**(L + 1 - depth)), name
        no_wd = p.ndim == 1 or name == 'backbone.pos_embed'
        assert group['weight_decay'] == (0.0 if no_wd else 0.1), name
        seen += 1
    assert seen == len(by_param)
    # block 0 learns at 0.7**4 of the head's rate, the patch embedding at 0.7**5
    assert by_param[id(model.backbone.layers[0].attn.qkv.weight)]['lr'] == \
        pytest.approx(base_lr * 0.7**4)
    assert by_param[id(model.backbone.patch_embed.projection.weight)]['lr'] == \
        pytest.approx(base_lr * 0.7**5)


def test_fp16_compression_hook_real_ddp(tmp_path):
    """Real gloo process group (1 process) and MMDistributedDataParallel: after the
    hook, all-reduced gradients are fp16 values; without distribution it is a no-op."""
    import torch.distributed as dist
    from mmdet.registry import HOOKS
    from mmengine.model import MMDistributedDataParallel
    hook = HOOKS.build(dict(type='Fp16CompressionHook'))
    torch.manual_seed(0)
    x = torch.randn(5, 16)
    ref = torch.nn.Linear(16, 4, bias=False)
    ref(x).sum().backward()
    exact = ref.weight.grad.clone()
    assert not torch.equal(exact, exact.half().float())  # not fp16-representable

    plain = torch.nn.Linear(16, 4, bias=False)
    hook.before_train(SimpleNamespace(distributed=False, model=plain))

    dist.init_process_group(
        'gloo', init_method=f'file://{tmp_path}/pg', rank=0, world_size=1)
    try:
        model = torch.nn.Linear(16, 4, bias=False)
        model.load_state_dict(ref.state_dict())
        ddp = MMDistributedDataParallel(module=model)
        hook.before_train(SimpleNamespace(distributed=True, model=ddp))
        ddp(x).sum().backward()
        grad = ddp.module.weight.grad
        assert torch.equal(grad, exact.half().float())
        torch.testing.assert_close(grad, exact, rtol=1e-3, atol=1e-3)
        with pytest.raises(TypeError, match='DistributedDataParallel'):
            hook.before_train(SimpleNamespace(distributed=True, model=model))
    finally:
        dist.destroy_process_group()
