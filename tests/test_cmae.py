"""CMAE modules: unit masking, losses against the paper's equations, EMA target
branch."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

TINY_ARCH = dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64)


@pytest.fixture(scope='module')
def registry():
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import cmae_mm  # noqa: F401
    init_default_scope('mmpretrain')
    return MODELS


def _tiny_cmae(registry, repo_root, **model_overrides):
    """The demo config's CMAE (192-d, 4 layers), BN instead of SyncBN."""
    from mmengine.config import Config
    from mmengine.logging import MessageHub
    from mmengine.model import revert_sync_batchnorm
    cfg = Config.fromfile(
        osp.join(repo_root, 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py'))
    cfg.model.update(model_overrides)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(registry.build(cfg.model))
    model.init_weights()
    model.train()
    MessageHub.get_current_instance().update_info('max_iters', 100)
    return model


def _views(photos, n=4, shift=(5, 9)):
    """Normalised online / target views (n, 3, 224, 224) from real photographs."""
    import cv2
    online, target = [], []
    for photo in list(photos.values())[:n]:
        img = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)
        img = torch.from_numpy(img).permute(2, 0, 1).float()
        dy, dx = shift
        online.append(img[:, :224, :224])
        target.append(img[:, dy:dy + 224, dx:dx + 224])
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    return ((torch.stack(online) - mean) / std, (torch.stack(target) - mean) / std)


# ----------------------------------------------------------------------- masking
@pytest.mark.parametrize(
    'img_size,ratio,unit,visible',
    [
        (224, 0.65, 2, 68),  # released CMAE: 17 of 49 units of 2x2 patches
        (224, 0.75, 1, 49),  # paper text / MAE: 75 % per patch
        (224, 0.6, 7, 49),  # 4 units of 7x7, keep int(4 * 0.4) = 1
        (128, 0.75, 4, 16),  # 8x8 grid, 4 units of 4x4, keep 1
        (64, 0.5, 2, 8),  # 4x4 grid, 4 units of 2x2, keep 2
        (96, 0.0, 3, 36),  # nothing masked
    ])
def test_unit_masking_geometry(registry, img_size, ratio, unit, visible):
    vit = registry.build(
        dict(
            type='CMAEViT',
            arch=TINY_ARCH,
            img_size=img_size,
            patch_size=16,
            mask_ratio=ratio,
            mask_unit_size=unit))
    vit.init_weights()
    h = w = img_size // 16
    B, L = 3, h * w
    assert vit.num_visible == visible
    x = torch.randn(B, 3, img_size, img_size)
    g = torch.Generator().manual_seed(0)
    latent, mask, ids_restore = vit(x, generator=g)
    assert latent.shape == (B, 1 + visible, 32)
    assert mask.shape == (B, L)
    assert torch.equal(mask.sum(1), torch.full((B, ), float(L - visible)))
    # every unit is entirely visible or entirely masked
    units = mask.view(B, h // unit, unit, w // unit, unit).permute(0, 1, 3, 2, 4)
    units = units.reshape(B, -1, unit * unit)
    assert torch.all((units.min(-1).values == units.max(-1).values))
    # ids_restore is a permutation and puts visible tokens back at mask == 0
    tokens = torch.arange(L, dtype=torch.float).view(1, L, 1).repeat(B, 1, 2)
    g = torch.Generator().manual_seed(1)
    vit._mask_generator = g
    kept, mask2, restore2 = vit.random_masking(tokens, ratio)
    vit._mask_generator = None
    assert torch.equal(restore2.sort(1).values, torch.arange(L).expand(B, L))
    for b in range(B):
        vis_pos = torch.nonzero(mask2[b] == 0).flatten()
        assert torch.equal(kept[b, :, 0].sort().values, vis_pos.float())
        # MAE decoder's restore: [visible, mask tokens] gathered by ids_restore
        filled = torch.cat([kept[b, :, 0], torch.full((L - visible, ), -1.)])
        restored = filled[restore2[b]]
        assert torch.equal(restored[mask2[b] == 0], vis_pos.float())
        assert torch.all(restored[mask2[b] == 1] == -1)
    # the same generator state draws the same masks
    m_a = vit(x, generator=torch.Generator().manual_seed(5))[1]
    m_b = vit(x, generator=torch.Generator().manual_seed(5))[1]
    assert torch.equal(m_a, m_b)


def test_bad_mask_unit_is_an_error(registry):
    with pytest.raises(ValueError, match='mask_unit_size=3 must divide'):
        registry.build(
            dict(
                type='CMAEViT',
                arch=TINY_ARCH,
                img_size=224,
                patch_size=16,
                mask_unit_size=3))


# ------------------------------------------------------------------------ losses
def _patchify(img, p=16):
    """(B, 3, H, W) -> (B, L, p*p*3), patches in raster order, pixels (p, q, c)."""
    B, C, H, W = img.shape
    x = img.unfold(2, p, p).unfold(3, p, p)  # B, C, h, w, p, q
    return x.permute(0, 2, 3, 4, 5, 1).reshape(B, (H // p) * (W // p), p * p * C)


def _target_repr(encoder, x):
    """Independent target-branch forward: whole view, no final norm, mean patches."""
    B = x.shape[0]
    tokens = encoder.patch_embed.projection(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([encoder.cls_token.expand(B, -1, -1), tokens], 1)
    tokens = tokens + encoder.pos_embed
    for layer in encoder.layers:
        tokens = layer(tokens)
    return tokens[:, 1:].mean(1)


@pytest.mark.parametrize('norm_pix', [True, False])
def test_losses_match_spec_equations(registry, repo_root, photos, norm_pix):
    tau = 0.07
    model = _tiny_cmae(
        registry, repo_root, loss_ct_weight=0.5, head=dict(norm_pix=norm_pix))
    online, target = _views(photos)
    state = model.mask_generator.get_state()
    losses = model.loss([online, target], None)
    assert set(losses) == {'loss_rc', 'loss_ct'}

    with torch.no_grad():
        g = torch.Generator()
        g.set_state(state)
        latent, mask, ids_restore = model.backbone(online, generator=g)
        assert int(mask[0].sum()) == 196 - 68
        pred = model.neck(latent, ids_restore)
        # loss_rc: MSE to per-patch normalised pixels (unbiased var, eps 1e-6),
        # averaged over masked patches only
        p = _patchify(online)
        if norm_pix:
            mu = p.mean(-1, keepdim=True)
            var = p.var(-1, unbiased=True, keepdim=True)
            p = (p - mu) / torch.sqrt(var + 1e-6)
        per_patch = ((pred - p)**2).mean(-1)
        loss_rc = (per_patch * mask).sum() / mask.sum()
        torch.testing.assert_close(losses['loss_rc'], loss_rc)

        # loss_ct: q = normalize(predictor(projector(mean(feature decoder))))
        #          k = normalize(target_projector(mean(target patch tokens)))
        q = model.feature_decoder(latent, ids_restore).mean(1)
        q = model.contrastive_head.predictor([model.projector([q])[0]])[0]
        enc, proj = model.target_encoder.module
        k = proj([_target_repr(enc, target)])[0]
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        logits = q @ k.t() / tau
        loss_ct = 2 * tau * F.cross_entropy(logits, torch.arange(len(q)))
        torch.testing.assert_close(losses['loss_ct'], 0.5 * loss_ct)


def test_tensor_mode_and_reconstruct(registry, repo_root, photos):
    model = _tiny_cmae(registry, repo_root)
    online, _ = _views(photos, n=2)
    feats = model(online, mode='tensor')
    assert isinstance(feats, tuple) and feats[0].shape == (2, 197, 192)
    # same as the online encoder with its final norm
    torch.testing.assert_close(feats[0], model.backbone(online, mask=None)[0])
    torch.manual_seed(0)
    masked, recon = model.reconstruct(online)
    assert masked.shape == recon.shape == online.shape
    p_in, p_masked, p_rec = map(_patchify, (online, masked, recon))
    vis = p_masked.abs().sum(-1) > 0
    assert int(vis[0].sum()) == 68  # visible patches kept, the rest zeroed
    torch.testing.assert_close(p_rec[vis], p_in[vis])
    assert not torch.allclose(p_rec[~vis], p_in[~vis])


# --------------------------------------------------------------------------- EMA
def test_ema_target_update_and_no_gradient(registry, repo_root, photos):
    from mmengine.optim import OptimWrapper
    model = _tiny_cmae(registry, repo_root)  # demo config: m = 0.99
    mom = 1 - 0.99
    online, target = _views(photos)
    optim = OptimWrapper(
        torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3))
    data = dict(inputs=[online * 58 + 120, target * 58 + 120], data_samples=None)

    def online_params():
        named = dict(model.backbone.named_parameters(prefix='0'))
        named.update(model.projector.named_parameters(prefix='1'))
        return {k: v.detach().clone() for k, v in named.items()}

    # the target holds exactly the encoder and the projector
    tgt = dict(model.target_encoder.module.named_parameters())
    assert set(tgt) == set(online_params())
    n_dec = sum(p.numel()
                for m in (model.neck, model.feature_decoder, model.contrastive_head)
                for p in m.parameters())
    assert n_dec > 0
    assert sum(p.numel() for p in model.target_encoder.parameters()) == \
        sum(p.numel() for p in online_params().values())
    assert all(not p.requires_grad for p in tgt.values())

    # backward through both losses reaches the online encoder, never the target
    losses = model.loss([online, target], None)
    (losses['loss_rc'] + losses['loss_ct']).backward()
    assert model.backbone.layers[0].attn.qkv.weight.grad is not None
    assert model.feature_decoder.decoder_pred.weight.grad is not None
    assert all(p.grad is None for p in model.target_encoder.parameters())
    model.zero_grad(set_to_none=True)
    model.target_encoder.steps.zero_()  # back to "never updated"

    # step 1 copies the online weights (as MMPretrain's MoCo v3)
    before = online_params()
    model.train_step(data, optim)
    for k, v in tgt.items():
        assert torch.equal(v, before[k]), k
    # later steps: target = m * target + (1 - m) * online
    for _ in range(2):
        theta_s, theta_t = online_params(), {k: v.clone() for k, v in tgt.items()}
        model.train_step(data, optim)
        changed = 0
        for k, v in tgt.items():
            expect = (1 - mom) * theta_t[k] + mom * theta_s[k]
            torch.testing.assert_close(v, expect, rtol=1e-6, atol=1e-7)  # 1 ulp
            changed += int(not torch.equal(v, theta_t[k]))
        assert changed > len(tgt) // 2
        assert all(p.grad is None for p in model.target_encoder.parameters())
    # the online side is trained by gradient: encoder, both decoders, predictor
    watched = {
        'encoder': model.backbone.layers[0].attn.qkv.weight,
        'pixel decoder': model.neck.decoder_pred.weight,
        'feature decoder': model.feature_decoder.decoder_pred.weight,
        'projector': model.projector.fc0.weight,
        'predictor': model.contrastive_head.predictor.fc0.weight,
    }
    snap = {k: v.detach().clone() for k, v in watched.items()}
    model.train_step(data, optim)
    for k, v in watched.items():
        assert not torch.equal(v, snap[k]), k


def test_mask_generator_state_is_checkpointed(registry, repo_root):
    a = _tiny_cmae(registry, repo_root)
    torch.rand(3, generator=a.mask_generator)
    sd = a.state_dict()
    assert sd['_extra_state'].dtype == torch.uint8
    b = _tiny_cmae(registry, repo_root)
    torch.manual_seed(123)
    b.mask_generator.manual_seed(99)
    b.load_state_dict(sd)
    assert torch.equal(
        torch.rand(5, generator=a.mask_generator),
        torch.rand(5, generator=b.mask_generator))


def test_cosine_momentum_needs_runner_info(registry, repo_root, photos):
    from mmengine.logging import MessageHub
    model = _tiny_cmae(registry, repo_root, end_momentum=0.0)
    # a new MessageHub becomes the current one and has no max_iters
    MessageHub.get_instance('cmae_test_fresh_hub')
    assert MessageHub.get_current_instance().get_info('max_iters') is None
    online, target = _views(photos, n=2)
    with pytest.raises(RuntimeError, match='max_iters'):
        model.loss([online, target], None)
    # a constant m needs no schedule information
    model = _tiny_cmae(registry, repo_root)
    MessageHub.get_instance('cmae_test_fresh_hub_2')
    model.loss([online, target], None)


def test_views_are_required(registry, repo_root, photos):
    model = _tiny_cmae(registry, repo_root)
    online, _ = _views(photos, n=2)
    with pytest.raises(ValueError, match='PixelShift'):
        model.loss(online, None)
