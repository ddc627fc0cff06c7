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
    # a fresh message hub: not inside a Runner's training loop
    MessageHub.get_instance(f'cmae_test_{id(model)}')
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
        (96, 0.25, 3, 27),  # 6x6 grid, 4 units of 3x3, keep 3
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
    seed = model.mask_draw_seed(model.mask_draws)  # the seed of loss()'s mask draw
    losses = model.loss([online, target], None)
    assert set(losses) == {'loss_rc', 'loss_ct'}

    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
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


@pytest.mark.e2e
def test_models_do_not_import_visualization(run_tool):
    """The reconstruction figure is the visualisation module's
    (``masked_reconstruction``), not a model method: the models never import it."""
    code = ('import sys\nfrom cmae_mm.models.algorithms import CMAE\n'
            "print('cmae_mm.visualization' in sys.modules, "
            "hasattr(CMAE, 'reconstruct'))\n")
    out, _ = run_tool(['-c', code], timeout=300)
    assert out.stdout.strip().splitlines()[-1] == 'False False'


def test_tensor_mode_and_reconstruct(registry, repo_root, photos):
    from cmae_mm.visualization import masked_reconstruction
    model = _tiny_cmae(registry, repo_root)
    online, _ = _views(photos, n=2)
    feats = model(online, mode='tensor')
    assert isinstance(feats, tuple) and feats[0].shape == (2, 197, 192)
    # same as the online encoder with its final norm
    torch.testing.assert_close(feats[0], model.backbone(online, mask=None)[0])
    torch.manual_seed(0)
    masked, recon = masked_reconstruction(model, online)
    assert masked.shape == recon.shape == online.shape
    p_in, p_masked, p_rec = map(_patchify, (online, masked, recon))
    vis = p_masked.abs().sum(-1) > 0
    assert int(vis[0].sum()) == 68  # visible patches kept, the rest zeroed
    torch.testing.assert_close(p_rec[vis], p_in[vis])
    assert not torch.allclose(p_rec[~vis], p_in[~vis])


# --------------------------------------------------------------------------- EMA
def _online_params(model):
    named = dict(model.backbone.named_parameters(prefix='0'))
    named.update(model.projector.named_parameters(prefix='1'))
    return {k: v.detach().clone() for k, v in named.items()}


def test_target_starts_as_copy_and_gets_no_gradient(registry, repo_root, photos):
    model = _tiny_cmae(registry, repo_root)
    tgt = dict(model.target_encoder.module.named_parameters())
    online = _online_params(model)
    # the target holds exactly the encoder and the projector, equal after init
    # (release CMAE.init_weights copies them)
    assert set(tgt) == set(online)
    for k, v in tgt.items():
        assert torch.equal(v, online[k]), k
    assert all(not p.requires_grad for p in tgt.values())
    n_dec = sum(p.numel()
                for m in (model.neck, model.feature_decoder, model.contrastive_head)
                for p in m.parameters())
    assert n_dec > 0
    # backward through both losses reaches the online modules, never the target
    view_a, view_b = _views(photos)
    losses = model.loss([view_a, view_b], None)
    (losses['loss_rc'] + losses['loss_ct']).backward()
    assert model.backbone.layers[0].attn.qkv.weight.grad is not None
    assert model.feature_decoder.decoder_pred.weight.grad is not None
    assert all(p.grad is None for p in model.target_encoder.parameters())


def test_target_is_the_ema_of_the_online_weights_after_each_step(
        registry, repo_root, photos):
    """After k optimizer steps + updates, the target equals the EMA of the online
    weights after those k steps, computed here independently:
    t_0 = theta_0, t_k = m t_{k-1} + (1 - m) theta_k; buffers are the target's own."""
    from mmengine.optim import OptimWrapper
    model = _tiny_cmae(registry, repo_root)  # demo config: m = 0.99
    m = 0.99
    view_a, view_b = _views(photos)
    optim = OptimWrapper(
        torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3))
    data = dict(inputs=[view_a * 58 + 120, view_b * 58 + 120], data_samples=None)
    expected = _online_params(model)
    target_bn = model.target_encoder.module[1].bn0
    for k in range(3):
        model.train_step(data, optim)
        theta = _online_params(model)
        model.update_target(k, 3)
        expected = {n: m * expected[n] + (1 - m) * theta[n] for n in expected}
    for n, v in model.target_encoder.module.named_parameters():
        torch.testing.assert_close(v, expected[n], rtol=1e-5, atol=1e-7, msg=n)
    assert int(model.target_encoder.steps) == 3
    # parameters only: the target's BatchNorm statistics are its own (its forward
    # in training mode updated them), not copies of the online projector's
    assert not torch.equal(target_bn.running_mean, model.projector.bn0.running_mean)
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


def test_loss_outside_training_leaves_the_target_unchanged(registry, repo_root, photos):
    model = _tiny_cmae(registry, repo_root)
    before = {k: v.clone() for k, v in model.target_encoder.state_dict().items()}
    view_a, view_b = _views(photos, n=2)
    with torch.no_grad():
        model.loss([view_a, view_b], None)  # training mode, no optimizer step
        model.eval()
        model.loss([view_a, view_b], None)
    after = model.target_encoder.state_dict()
    for k, v in before.items():
        if 'running' in k or 'num_batches' in k:
            continue  # the target's own BN statistics move in training mode
        assert torch.equal(v, after[k]), k
    assert int(after['steps']) == 0


def test_momentum_coefficient_schedules(registry, repo_root):
    """m_k = m_end - (m_end - m_0)(cos(pi k / K) + 1) / 2, the release hooks' form."""
    import math
    constant = _tiny_cmae(registry, repo_root)  # demo: 1 - m = 0.01
    assert constant.target_encoder.ema_coefficient(0, 10) == pytest.approx(0.99)
    assert constant.target_encoder.ema_coefficient(7, 10) == pytest.approx(0.99)
    cosine = _tiny_cmae(registry, repo_root, base_momentum=0.004, end_momentum=0.0)
    for k, K in ((0, 100), (25, 100), (50, 100), (100, 100)):
        ref = 1 - (1 - 0.996) * (math.cos(math.pi * k / K) + 1) / 2
        assert cosine.target_encoder.ema_coefficient(k, K) == pytest.approx(ref)
    with pytest.raises(ValueError, match='1 - m'):
        _tiny_cmae(registry, repo_root, end_momentum=2.0)


def test_training_in_a_runner_without_the_hook_is_refused(registry, repo_root, photos):
    """Inside MMEngine's training loop (message hub 'loop_stage' == 'train') a model
    without TargetUpdateHook stops with an error naming it."""
    from mmengine.logging import MessageHub
    model = _tiny_cmae(registry, repo_root)
    hub = MessageHub.get_current_instance()
    hub.update_info('loop_stage', 'train')
    view_a, view_b = _views(photos, n=2)
    with pytest.raises(RuntimeError, match='TargetUpdateHook'):
        model([view_a, view_b], None, mode='loss')
    model.target_update_hook_registered = True  # what the hook's before_train does
    model([view_a, view_b], None, mode='loss')
    hub.pop_info('loop_stage')


def test_target_cls_option(registry, repo_root, photos):
    """target_cls=False (release option): the target runs on the patch tokens alone,
    which changes its output; the default runs with the cls token."""
    model = _tiny_cmae(registry, repo_root)
    x, _ = _views(photos, n=2)
    enc = model.target_encoder.module[0]
    with torch.no_grad():
        with_cls = enc.forward_target(x)
        without = enc.forward_target(x, use_cls=False)
        # reference without cls: the blocks over patch tokens + position embedding
        tokens = enc.patch_embed(x)[0] + enc.pos_embed[:, 1:]
        for layer in enc.layers:
            tokens = layer(tokens)
    torch.testing.assert_close(without, tokens.mean(1))
    assert not torch.allclose(with_cls, without)
    no_cls = _tiny_cmae(registry, repo_root, target_cls=False)
    assert no_cls.target_cls is False


def test_mask_state_is_checkpointed(registry, repo_root):
    a = _tiny_cmae(registry, repo_root)
    a.next_mask_generator(torch.device('cpu'))
    sd = a.state_dict()
    assert sd['_extra_state'].tolist() == [a.mask_seed, 1]
    torch.manual_seed(123)
    b = _tiny_cmae(registry, repo_root)
    b.load_state_dict(sd)
    assert torch.equal(
        torch.rand(5, generator=a.next_mask_generator(torch.device('cpu'))),
        torch.rand(5, generator=b.next_mask_generator(torch.device('cpu'))))


def test_views_are_required(registry, repo_root, photos):
    model = _tiny_cmae(registry, repo_root)
    online, _ = _views(photos, n=2)
    with pytest.raises(ValueError, match='PixelShift'):
        model.loss(online, None)
