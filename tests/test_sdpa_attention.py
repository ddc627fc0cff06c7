"""Attention through ``F.scaled_dot_product_attention`` equals MMPretrain's.

``BEiTAttentionSDPA`` / ``ConMIMViT`` / ``TransferBEiTViT`` against MMPretrain's
``BEiTAttention`` / ``BEiTPretrainViT`` / ``BEiTViT``, and ``ViTSAMAttentionSDPA`` /
``ViTDet`` against ViTSAM's ``Attention`` / ``TransformerEncoderLayer``: same state
dict (loaded with ``strict=True``), outputs and gradients equal in float32. Tiny
models on CPU.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.models import BEiTPretrainViT, BEiTViT
from mmpretrain.models.backbones.vit_sam import Attention, TransformerEncoderLayer
from mmpretrain.models.utils.attention import BEiTAttention

import cmae_mm  # noqa: F401  (registers the modules)
from cmae_mm.models.backbones import ConMIMViT
from cmae_mm.models.utils import BEiTAttentionSDPA
from cmae_mm.transfer.backbones import TransferBEiTViT

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOL = dict(rtol=1e-5, atol=1e-5)
ARCH = dict(embed_dims=32, num_layers=2, num_heads=4, feedforward_channels=64)
#: a tiny BEiT backbone (4 x 4 patches, layer scale) for both BEiT backbone tests
BEIT_TINY = dict(
    arch=ARCH,
    img_size=32,
    patch_size=8,
    use_abs_pos_emb=False,
    layer_scale_init_value=0.1)


def randomize_(module: torch.nn.Module, scale: float = 0.2) -> None:
    """Draw every parameter afresh (tables start at zeros / 0.02 std)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * scale)


def twin(original: torch.nn.Module, cls, *args, **kwargs) -> torch.nn.Module:
    """``cls(*args, **kwargs)`` holding ``original``'s tensors (strict load)."""
    ours = cls(*args, **kwargs)
    ours.load_state_dict(original.state_dict(), strict=True)
    return ours


def assert_same_grads(a: torch.nn.Module, b: torch.nn.Module) -> None:
    grads_b = dict(b.named_parameters())
    n = 0
    for name, p in a.named_parameters():
        q = grads_b[name]
        if p.grad is None:
            assert q.grad is None, name
            continue
        torch.testing.assert_close(q.grad, p.grad, **TOL, msg=name)
        n += 1
    assert n > 0


# --------------------------------------------------------------- BEiT attention
@pytest.mark.parametrize('own_table', [True, False])
@pytest.mark.parametrize('shared', [True, False])
@pytest.mark.parametrize('bias', ['qv_bias', True, False])
def test_beit_attention_forward_backward(own_table, shared, bias):
    torch.manual_seed(0)
    kwargs = dict(
        embed_dims=32,
        num_heads=4,
        window_size=(3, 3),
        use_rel_pos_bias=own_table,
        bias=bias,
        attn_drop_rate=0.3)  # inactive in eval, as nn.Dropout
    ref = BEiTAttention(**kwargs)
    randomize_(ref)
    ours = twin(ref, BEiTAttentionSDPA, **kwargs)
    ref.eval(), ours.eval()
    N = 3 * 3 + 1
    x = torch.randn(2, N, 32)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    rel = torch.randn(4, N, N) if shared else None
    rel_ref = rel.clone().requires_grad_() if shared else None
    rel_ours = rel.clone().requires_grad_() if shared else None
    y_ref = ref(x_ref, rel_pos_bias=rel_ref)
    y_ours = ours(x_ours, rel_pos_bias=rel_ours)
    torch.testing.assert_close(y_ours, y_ref, **TOL)
    g = torch.randn_like(y_ref)
    (y_ref * g).sum().backward()
    (y_ours * g).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, **TOL)
    if shared:
        torch.testing.assert_close(rel_ours.grad, rel_ref.grad, **TOL)
    assert_same_grads(ref, ours)
    if own_table:
        assert ours.relative_position_bias_table.grad.abs().sum() > 0


def test_beit_attention_dropout_in_training_only():
    torch.manual_seed(0)
    ours = BEiTAttentionSDPA(
        embed_dims=32,
        num_heads=4,
        window_size=(3, 3),
        use_rel_pos_bias=True,
        attn_drop_rate=0.5)
    randomize_(ours)
    x = torch.randn(2, 10, 32)
    ours.eval()
    y_eval = ours(x)
    torch.testing.assert_close(ours(x), y_eval, rtol=0, atol=0)
    ours.train()
    assert not torch.allclose(ours(x), y_eval)


# ---------------------------------------------------------------- BEiT backbones
def test_conmim_vit_equals_beit_pretrain_vit_shared_bias():
    """The ConMIM pretraining encoder: shared table, layer scale, mask and no mask."""
    kwargs = dict(
        BEIT_TINY, out_type='raw', use_rel_pos_bias=False, use_shared_rel_pos_bias=True)
    torch.manual_seed(0)
    ref = BEiTPretrainViT(**kwargs)
    torch.manual_seed(0)
    same_seed = ConMIMViT(**kwargs)
    # re-classing draws nothing: a seeded build initialises as MMPretrain's
    for (k, a), (k2, b) in zip(ref.state_dict().items(),
                               same_seed.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    randomize_(ref)
    ours = twin(ref, ConMIMViT, **kwargs)
    assert all(type(layer.attn) is BEiTAttentionSDPA for layer in ours.layers)
    assert ours.rel_pos_bias is not None and \
        ours.layers[0].attn.relative_position_bias_table is None
    ref.train(), ours.train()  # drop rates are 0: training mode is deterministic
    x = torch.randn(2, 3, 32, 32)
    mask = torch.rand(2, 4, 4) > 0.5
    for m in (mask, None):
        out_ref, out_ours = ref(x, m)[-1], ours(x, m)[-1]
        assert out_ref.shape == (2, 17, 32)
        torch.testing.assert_close(out_ours, out_ref, **TOL)
    ref(x, mask)[-1].pow(2).mean().backward()
    ours(x, mask)[-1].pow(2).mean().backward()
    assert_same_grads(ref, ours)
    assert ours.rel_pos_bias.relative_position_bias_table.grad.abs().sum() > 0


def test_transfer_beit_vit_equals_beit_vit_per_layer_bias():
    """The downstream encoder: one table per block, feature maps of every block."""
    kwargs = dict(
        BEIT_TINY,
        out_indices=[0, 1],
        out_type='featmap',
        use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False)
    torch.manual_seed(0)
    ref = BEiTViT(**kwargs)
    randomize_(ref)
    ours = twin(ref, TransferBEiTViT, **kwargs)
    assert all(type(layer.attn) is BEiTAttentionSDPA for layer in ours.layers)
    off = TransferBEiTViT(use_sdpa=False, **kwargs)
    assert all(type(layer.attn) is BEiTAttention for layer in off.layers)
    ref.eval(), ours.eval()
    x = torch.randn(2, 3, 32, 32)
    outs_ref, outs_ours = ref(x), ours(x)
    for a, b in zip(outs_ref, outs_ours):
        assert a.shape == (2, 32, 4, 4)
        torch.testing.assert_close(b, a, **TOL)
    sum(o.pow(2).mean() for o in outs_ref).backward()
    sum(o.pow(2).mean() for o in outs_ours).backward()
    assert_same_grads(ref, ours)


# ---------------------------------------------------------------------- ViTDet
@pytest.mark.parametrize('use_rel_pos', [True, False])
def test_vitsam_attention_forward_backward(use_rel_pos):
    from cmae_mm.transfer.det.vitdet import ViTSAMAttentionSDPA
    torch.manual_seed(0)
    kwargs = dict(
        embed_dims=32, num_heads=4, use_rel_pos=use_rel_pos, input_size=(5, 6))
    ref = Attention(**kwargs)
    randomize_(ref)
    ours = twin(ref, ViTSAMAttentionSDPA, **kwargs)
    x = torch.randn(3, 5, 6, 32)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y_ours = ref(x_ref), ours(x_ours)
    torch.testing.assert_close(y_ours, y_ref, **TOL)
    g = torch.randn_like(y_ref)
    (y_ref * g).sum().backward()
    (y_ours * g).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, **TOL)
    assert_same_grads(ref, ours)
    if use_rel_pos:
        assert ours.rel_pos_h.grad.abs().sum() > 0


@pytest.mark.parametrize('window_size', [0, 3])  # global; windows padded 8 -> 9
def test_vitdet_layer_equals_vitsam_layer(window_size):
    from cmae_mm.transfer.det.vitdet import ViTDetLayer, ViTSAMAttentionSDPA
    torch.manual_seed(0)
    kwargs = dict(
        embed_dims=32,
        num_heads=4,
        feedforward_channels=64,
        window_size=window_size,
        input_size=(8, 8),
        use_rel_pos=True)
    ref = TransformerEncoderLayer(**kwargs)
    randomize_(ref)
    ours = twin(ref, ViTDetLayer, **kwargs)
    assert type(ours.attn) is ViTSAMAttentionSDPA
    assert type(ViTDetLayer(use_sdpa=False, **kwargs).attn) is Attention
    x = torch.randn(2, 8, 8, 32)
    y_ref, y_ours = ref(x), ours(x)
    torch.testing.assert_close(y_ours, y_ref, **TOL)
    y_ref.pow(2).mean().backward()
    y_ours.pow(2).mean().backward()
    assert_same_grads(ref, ours)


def test_vitdet_backbone_sdpa_equals_hand_written():
    """Windowed and global blocks in one backbone; use_sdpa=False is ViTSAM's."""
    from cmae_mm.transfer.det.vitdet import ViTDet
    kwargs = dict(
        arch=dict(ARCH, global_attn_indexes=[1]),
        img_size=64,
        patch_size=8,
        window_size=3,
        drop_path_rate=0.)
    torch.manual_seed(0)
    ref = ViTDet(use_sdpa=False, **kwargs)
    assert all(type(layer.attn) is Attention for layer in ref.layers)
    randomize_(ref)
    ours = twin(ref, ViTDet, **kwargs)
    x = torch.randn(2, 3, 64, 64)
    (y_ref, ), (y_ours, ) = ref(x), ours(x)
    assert y_ref.shape == (2, 32, 8, 8)
    torch.testing.assert_close(y_ours, y_ref, **TOL)
    y_ref.pow(2).mean().backward()
    y_ours.pow(2).mean().backward()
    assert_same_grads(ref, ours)


# --------------------------------------------------------------------- configs
def test_configs_use_the_sdpa_path():
    pre = Config.fromfile(
        osp.join(REPO, 'configs/_base_/models/conmim_vit-base-p16.py'))
    assert pre.model.backbone.type == 'ConMIMViT'
    for name in ('cls/conmim_vit-base-p16_8xb128-coslr-100e_in1k.py',
                 'cls/conmim_vit-small-p16_8xb128-coslr-100e_in1k.py',
                 'cls/conmim_vit-large-p16_8xb128-coslr-100e_in1k.py',
                 'seg/conmim_vit-base-p16_upernet_8xb2-160k_ade20k-512x512.py',
                 '_base_/models/mask-rcnn_vit-base-p16_vitdet.py'):
        backbone = Config.fromfile(osp.join(REPO, 'configs', name)).model.backbone
        assert backbone.use_sdpa is True, name
