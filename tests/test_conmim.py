"""ConMIM unit tests: loss formula, projector, target branch, momentum, views,
configs."""
import copy
import glob
import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmpretrain.registry import MODELS, TRANSFORMS
from mmpretrain.structures import DataSample

import cmae_mm  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_CFG = osp.join(REPO, 'configs/pretrain/conmim_vit-tiny-p16_1xb8-20e_demo.py')
CONMIM_CFGS = sorted(glob.glob(osp.join(REPO, 'configs/pretrain/conmim_*.py')))


# --------------------------------------------------------------------------- loss
def _reference_loss(pred, target, mask, tau):
    """Per-image InfoNCE written out with loops in float64 numpy."""
    pred = pred.double().numpy()
    target = target.double().numpy()
    mask = mask.numpy().astype(bool)
    terms = []
    for b in range(pred.shape[0]):
        q = pred[b] / np.linalg.norm(pred[b], axis=1, keepdims=True)
        k = target[b] / np.linalg.norm(target[b], axis=1, keepdims=True)
        for i in range(pred.shape[1]):
            if not mask[b, i]:
                continue
            logits = np.array([q[i] @ k[j] for j in range(k.shape[0])]) / tau
            terms.append(-logits[i] + np.log(np.exp(logits).sum()))
    return float(np.mean(terms))


def _loss(tau=0.1):
    return MODELS.build(dict(type='DenoisingContrastiveLoss', temperature=tau))


def test_loss_equals_independent_computation():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 7, 5, generator=g)
    target = torch.randn(3, 7, 5, generator=g)
    mask = torch.tensor([[1, 0, 1, 1, 0, 0, 1], [0, 0, 0, 1, 0, 0, 0],
                         [1, 1, 1, 1, 1, 1, 0]])
    for tau in (0.1, 0.5):
        got = _loss(tau)(pred, target, mask).item()
        assert got == pytest.approx(
            _reference_loss(pred, target, mask, tau), rel=1e-5, abs=1e-6)
    # a (B, H, W) mask is the same as its flattened (B, N) form
    pred4, target4 = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    m = torch.tensor([[[1, 0], [0, 1]], [[0, 1], [1, 1]]])
    assert _loss()(pred4, target4, m).item() == pytest.approx(
        _reference_loss(pred4, target4, m.flatten(1), 0.1), rel=1e-5)


def test_loss_only_masked_rows_count():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(2, 6, 4, generator=g, requires_grad=True)
    target = torch.randn(2, 6, 4, generator=g)
    mask = torch.tensor([[1, 0, 0, 1, 0, 1], [0, 1, 0, 0, 0, 0]]).bool()
    loss = _loss()(pred, target, mask)
    loss.backward()
    assert torch.all(pred.grad[~mask] == 0)
    assert torch.all(pred.grad[mask].abs().sum(-1) > 0)
    # changing the online output at unmasked positions changes nothing ...
    moved = pred.detach().clone()
    moved[~mask] = torch.randn(int((~mask).sum()), 4, generator=g)
    assert _loss()(moved, target, mask).item() == pytest.approx(loss.item(), abs=1e-7)
    # ... at a masked position it does
    moved[0, 0] = -moved[0, 0]
    assert abs(_loss()(moved, target, mask).item() - loss.item()) > 1e-3
    # but every target patch is a key (negatives include unmasked positions)
    t2 = target.clone()
    t2[0, 2] = torch.randn(4, generator=g)
    assert abs(_loss()(pred.detach(), t2, mask).item() - loss.item()) > 1e-4
    # and no gradient reaches the target
    target.requires_grad_(True)
    pred2 = pred.detach().clone().requires_grad_(True)
    _loss()(pred2, target, mask).backward()
    assert pred2.grad is not None and target.grad is None


def test_loss_positive_is_same_position_and_negatives_are_intra_image():
    n = 5
    eye = torch.eye(n).expand(2, n, n).clone()  # token i = unit vector e_i
    mask = torch.ones(2, n, dtype=torch.bool)
    tau = 0.1
    # target == pred: every query matches its own position, cos 1 vs 0
    same = _loss(tau)(eye, eye, mask).item()
    e = math.exp(1 / tau)
    assert same == pytest.approx(-math.log(e / (e + n - 1)), abs=1e-6)
    # target shifted by one position: the positive (same position) now has cos 0
    shifted = _loss(tau)(eye, eye.roll(1, dims=1), mask).item()
    assert shifted == pytest.approx(math.log(math.exp(1 / tau) + n - 1), rel=1e-5)
    # other images are not negatives: image 1's targets do not touch image 0's rows
    g = torch.Generator().manual_seed(2)
    pred, target = torch.randn(2, n, 8, generator=g), torch.randn(2, n, 8, generator=g)
    only0 = torch.zeros(2, n, dtype=torch.bool)
    only0[0] = True
    base = _loss(tau)(pred, target, only0).item()
    target[1] = torch.randn(n, 8, generator=g)
    assert _loss(tau)(pred, target, only0).item() == pytest.approx(base, abs=1e-7)


def test_loss_rejects_bad_masks():
    x = torch.randn(2, 4, 3)
    with pytest.raises(ValueError, match='patch-level mask'):
        _loss()(x, x, torch.ones(2, 2))
    with pytest.raises(ValueError, match='marks no patch'):
        _loss()(x, x, torch.zeros(2, 4))


# ---------------------------------------------------------------------- projector
def test_token_projector_is_per_token_nonlinear_neck():
    from mmpretrain.models.necks import NonLinearNeck
    cfg = dict(
        in_channels=8,
        hid_channels=16,
        out_channels=4,
        num_layers=3,
        with_bias=False,
        with_last_bn=True,
        with_last_bn_affine=False,
        with_last_bias=False,
        norm_cfg=dict(type='BN1d'))
    neck = MODELS.build(dict(type='TokenNonLinearNeck', **cfg))
    # structure: Linear(no bias)-BN-ReLU x2, Linear(no bias)-BN(affine=False)
    assert [neck.fc0.bias, neck.fc1.bias, neck.fc2.bias] == [None, None, None]
    assert neck.bn0.affine and neck.bn1.affine and not neck.bn2.affine
    assert tuple(neck.fc2.weight.shape) == (4, 16)
    x = torch.randn(3, 5, 8)
    ref = NonLinearNeck(**cfg, with_avg_pool=False)
    ref.load_state_dict(neck.state_dict())
    out = neck((x, ))[0]
    assert out.shape == (3, 5, 4)
    # train mode: BN statistics over all B * L tokens
    torch.testing.assert_close(out, ref((x.reshape(15, 8), ))[0].reshape(3, 5, 4))
    # last BN without affine: every output channel has zero mean, unit variance
    torch.testing.assert_close(
        out.reshape(15, 4).mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    # SyncBN can be configured (falls back to BN outside a process group)
    sync = MODELS.build(
        dict(type='TokenNonLinearNeck', **{
            **cfg, 'norm_cfg': dict(type='SyncBN')
        }))
    assert isinstance(sync.bn0, torch.nn.SyncBatchNorm)
    sync.load_state_dict(neck.state_dict())
    torch.testing.assert_close(sync((x, ))[0], out)
    with pytest.raises(ValueError, match='with_avg_pool'):
        MODELS.build(dict(type='TokenNonLinearNeck', with_avg_pool=True, **cfg))


# ---------------------------------------------------------------------- the model
@pytest.fixture(scope='module')
def tiny_cfg():
    return Config.fromfile(TINY_CFG)


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg.model))
    model.init_weights()
    return model


def _batch(b=2, seed=0, size=224):
    g = torch.Generator().manual_seed(seed)
    views = [torch.randn(b, 3, size, size, generator=g) for _ in range(2)]
    samples = []
    for _ in range(b):
        m = (torch.rand(14, 14, generator=g) < 0.75).long()
        m[0, 0] = 1
        samples.append(DataSample().set_mask(m))
    return views, samples


def _set_max_iters(n):
    MessageHub.get_current_instance().update_info('max_iters', n)


def test_target_gets_full_view_and_no_gradient(tiny_cfg):
    _set_max_iters(10)
    model = _model(tiny_cfg)
    views, samples = _batch()
    calls = {}

    def grab(name):

        def hook(module, args, kwargs):
            calls[name] = (args, kwargs)

        return hook

    handles = [
        model.backbone.register_forward_pre_hook(grab('online'), with_kwargs=True),
        model.target_encoder.module[0].register_forward_pre_hook(
            grab('target'), with_kwargs=True),
    ]
    outs = {}

    def keep_target(module, args, out):
        outs['target'] = out[0]  # returns None: the output is left as it is

    handles.append(model.target_encoder.module[1].register_forward_hook(keep_target))
    loss = model.loss(views, samples)['loss']
    for h in handles:
        h.remove()

    args, kwargs = calls['target']
    assert args[0] is views[1]  # the full, perturbed view ...
    assert kwargs.get('mask', 'absent') is None  # ... uncorrupted: no mask at all
    args, kwargs = calls['online']
    assert args[0] is views[0]
    mask = args[1] if len(args) > 1 else kwargs['mask']
    torch.testing.assert_close(mask,
                               torch.stack([s.mask for s in samples]).flatten(1).bool())
    # the target's output equals the target run by hand on the full view, no graph
    assert not outs['target'].requires_grad
    with torch.no_grad():
        enc, proj = model.target_encoder.module
        ref = proj((enc(views[1], mask=None)[-1], ))[0]
    torch.testing.assert_close(outs['target'], ref)

    loss.backward()
    target_params = list(model.target_encoder.parameters())
    assert target_params and all(not p.requires_grad and p.grad is None
                                 for p in target_params)
    assert model.backbone.mask_token.grad.abs().sum() > 0
    assert model.neck.fc0.weight.grad.abs().sum() > 0


def test_loss_is_the_head_loss_of_online_vs_target(tiny_cfg):
    _set_max_iters(10)
    model = _model(tiny_cfg)
    views, samples = _batch(seed=3)
    loss = model.loss(views, samples)['loss']
    mask = torch.stack([s.mask for s in samples]).flatten(1).bool()
    with torch.no_grad():
        pred = model.neck((model.backbone(views[0], mask)[-1], ))[0][:, 1:]
        enc, proj = model.target_encoder.module
        tgt = proj((enc(views[1], mask=None)[-1], ))[0][:, 1:]
    assert pred.shape == (2, 196, 256)
    ref = _reference_loss(pred, tgt, mask, 0.1)
    assert loss.item() == pytest.approx(ref, rel=1e-4)


def test_momentum_schedule_start_middle_end(tiny_cfg):
    """The target starts as a copy of the online model (parameters and buffers, as
    the release's load_state_dict), then each update after an optimizer step is
    theta_t <- m_k theta_t + (1 - m_k) theta_s with the release's cosine
    m_k = 1 - (1 - 0.996)(1 + cos(pi k / K)) / 2, parameters only."""
    total = 100
    model = _model(tiny_cfg)
    tgt_enc, tgt_proj = model.target_encoder.module
    torch.testing.assert_close(tgt_enc.cls_token, model.backbone.cls_token)
    torch.testing.assert_close(tgt_proj.bn0.running_var, model.neck.bn0.running_var)

    def m_expected(k):
        return 1 - (1 - 0.996) * (1 + math.cos(math.pi * k / total)) / 2

    for k, m_nominal in ((0, 0.996), (total // 2, 0.998), (total, 1.0)):
        with torch.no_grad():
            model.backbone.cls_token.fill_(1.0)
            tgt_enc.cls_token.fill_(0.0)
            model.neck.fc0.weight.fill_(1.0)
            tgt_proj.fc0.weight.fill_(0.0)
            model.neck.bn0.running_mean.fill_(5.0)
            tgt_proj.bn0.running_mean.fill_(-1.0)
        model.update_target(k, total)
        m = m_expected(k)
        assert m == pytest.approx(m_nominal, abs=1e-5)
        # theta_t <- m * 0 + (1 - m) * 1
        torch.testing.assert_close(tgt_enc.cls_token,
                                   torch.full_like(tgt_enc.cls_token, 1 - m))
        torch.testing.assert_close(tgt_proj.fc0.weight,
                                   torch.full_like(tgt_proj.fc0.weight, 1 - m))
        # buffers are not averaged nor copied: the target keeps its own statistics
        assert torch.all(tgt_proj.bn0.running_mean == -1.0)


def test_loss_has_no_side_effect_on_the_target(tiny_cfg):
    model = _model(tiny_cfg)
    before = {k: v.clone() for k, v in model.target_encoder.named_parameters()}
    views, samples = _batch(seed=6)
    with torch.no_grad():
        model.loss(views, samples)
    for k, v in model.target_encoder.named_parameters():
        assert torch.equal(v, before[k]), k
    assert int(model.target_encoder.steps) == 0


def test_checkpoint_keys_load_into_downstream_beit(tiny_cfg, tmp_path):
    from mmpretrain.models import BEiTViT

    from cmae_mm.engine.checkpoint import extract_encoder, load_state_dict_checked
    _set_max_iters(10)
    model = _model(tiny_cfg)
    views, samples = _batch(seed=5)
    with torch.no_grad():
        model.loss(views, samples)
        for p in model.backbone.parameters():  # make online != target
            p.add_(0.5)
    sd = model.state_dict()
    for key in ('backbone.mask_token',
                'backbone.rel_pos_bias.relative_position_bias_table', 'neck.fc0.weight',
                'target_encoder.module.0.cls_token',
                'target_encoder.module.0.layers.3.gamma_2',
                'target_encoder.module.1.fc2.weight',
                'target_encoder.module.1.bn2.running_mean'):
        assert key in sd, key
    ckpt = str(tmp_path / 'conmim.pth')
    torch.save({'state_dict': sd}, ckpt)
    arch = dict(embed_dims=192, num_layers=4, num_heads=3, feedforward_channels=768)
    for which, prefix in (('online', 'backbone.'), ('target',
                                                    'target_encoder.module.0.')):
        table = sd[prefix + 'rel_pos_bias.relative_position_bias_table']
        # MMPretrain's downstream BEiT config path: init_cfg Pretrained with a prefix
        down = BEiTViT(
            arch=arch,
            out_type='avg_featmap',
            final_norm=False,
            use_rel_pos_bias=True,
            use_shared_rel_pos_bias=False,
            init_cfg=dict(type='Pretrained', checkpoint=ckpt, prefix=prefix))
        down.init_weights()
        for i in range(4):  # the shared table was expanded to every block
            torch.testing.assert_close(down.layers[i].attn.relative_position_bias_table,
                                       table)
        torch.testing.assert_close(down.patch_embed.projection.weight,
                                   sd[prefix + 'patch_embed.projection.weight'])
        torch.testing.assert_close(down.layers[2].gamma_1,
                                   sd[prefix + 'layers.2.gamma_1'])
        # the project's checked loader: nothing missing except recomputed index
        # buffers and the new pooled-feature norm
        down2 = BEiTViT(
            arch=arch,
            out_type='avg_featmap',
            final_norm=False,
            use_rel_pos_bias=True,
            use_shared_rel_pos_bias=False)
        load_state_dict_checked(
            down2,
            extract_encoder(sd, which),
            allowed_missing=('relative_position_index', 'ln2.'))
        torch.testing.assert_close(down2.layers[1].attn.relative_position_bias_table,
                                   table)
        torch.testing.assert_close(down2.layers[3].ffn.layers[1].weight,
                                   sd[prefix + 'layers.3.ffn.layers.1.weight'])
    assert not torch.equal(sd['backbone.cls_token'],
                           sd['target_encoder.module.0.cls_token'])


def test_unmasked_forward_paths_agree(tiny_cfg):
    # BEiTPretrainViT: mask=None (target) and an all-False mask give the same tokens
    model = _model(tiny_cfg)
    x = _batch(b=2, seed=6)[0][0]
    with torch.no_grad():
        full = model.backbone(x, mask=None)[-1]
        none_masked = model.backbone(x, torch.zeros(2, 196, dtype=torch.bool))[-1]
        some_masked = model.backbone(x, torch.ones(2, 196, dtype=torch.bool))[-1]
    assert full.shape == (2, 197, 192)
    torch.testing.assert_close(full, none_masked, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(full, some_masked, atol=1e-3)


def test_model_rejects_unit_level_mask_and_single_view(tiny_cfg):
    _set_max_iters(10)
    model = _model(tiny_cfg)
    views, _ = _batch()
    coarse = [
        DataSample().set_mask(torch.ones(7, 7, dtype=torch.long)) for _ in range(2)
    ]
    with pytest.raises(ValueError, match='patch level'):
        model.loss(views, coarse)
    with pytest.raises(ValueError, match='two views'):
        model.loss(views[:1], coarse)


def test_optimizer_weight_decay_groups(tiny_cfg):
    from mmengine.optim import build_optim_wrapper
    model = _model(tiny_cfg)
    wrapper = build_optim_wrapper(model, copy.deepcopy(tiny_cfg.optim_wrapper))
    names = {id(p): n for n, p in model.named_parameters()}
    wd = {
        names[id(p)]: g['weight_decay']
        for g in wrapper.optimizer.param_groups
        for p in g['params']
    }
    assert wrapper.optimizer.defaults['betas'] == (0.9, 0.98)
    # released optim_factory: no decay on 1-d tensors and on cls_token / pos_embed
    for name in ('backbone.cls_token', 'backbone.layers.0.gamma_1',
                 'backbone.layers.0.attn.q_bias', 'backbone.layers.0.attn.v_bias',
                 'backbone.layers.0.ln1.weight', 'backbone.layers.0.attn.proj.bias',
                 'backbone.ln1.bias', 'neck.bn0.weight', 'neck.bn1.bias'):
        assert wd[name] == 0.0, name
    for name in ('backbone.mask_token', 'backbone.patch_embed.projection.weight',
                 'backbone.rel_pos_bias.relative_position_bias_table',
                 'backbone.layers.0.attn.qkv.weight', 'neck.fc0.weight'):
        assert wd[name] == 0.05, name


# -------------------------------------------------------------- views and masking
def _pipeline(cfg, edit=None):
    from mmcv.transforms import Compose
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')  # as the runner does (nested RandomApply builds)
    pipe = copy.deepcopy(cfg.train_dataloader.dataset.pipeline)
    if edit is not None:
        edit(pipe)
    return Compose([TRANSFORMS.build(t) for t in pipe[1:]])  # skip LoadImageFromFile


def _result(img):
    return dict(
        img=np.ascontiguousarray(img[..., ::-1]),
        img_shape=img.shape[:2],
        ori_shape=img.shape[:2])  # BGR, as LoadImageFromFile gives


def _views(pipe, img):
    out = pipe(_result(img))
    return [v.cpu().numpy() if torch.is_tensor(v) else v
            for v in out['inputs']], out['data_samples']


def test_views_share_crop_and_flip(tiny_cfg, photos):
    img = photos['astronaut']

    def no_strong_aug(pipe):
        for t in pipe[3]['transforms'][1]:
            t['prob'] = 0.0

    pipe = _pipeline(tiny_cfg, no_strong_aug)
    np.random.seed(0)
    firsts = []
    for _ in range(6):
        (v0, v1), _ = _views(pipe, img)
        assert v0.shape == (3, 224, 224)
        np.testing.assert_array_equal(v0, v1)  # same crop, same flip
        firsts.append(v0)
    assert any(not np.array_equal(firsts[0], f) for f in firsts[1:])  # crops are random


def test_strong_augmentation_lands_on_target_view_only(tiny_cfg, photos):
    img = photos['coffee']
    side = min(img.shape[:2])
    img = np.ascontiguousarray(img[:side, :side])

    def fixed_geometry(pipe):  # whole square image, no flip: view 0 is deterministic
        pipe[1].update(crop_ratio_range=(1.0, 1.0), aspect_ratio_range=(1.0, 1.0))
        pipe[2]['prob'] = 0.0

    pipe = _pipeline(tiny_cfg, fixed_geometry)
    np.random.seed(1)
    online, changed = [], 0
    for _ in range(12):
        (v0, v1), _ = _views(pipe, img)
        online.append(v0)
        changed += int(not np.array_equal(v0, v1))
    for v0 in online[1:]:
        np.testing.assert_array_equal(v0, online[0])  # online view: never augmented
    assert changed >= 6  # P(no strong aug) = 0.2 * 0.8 * 0.9 * 0.8 = 0.115 per draw


def test_masks_from_config_pipelines(photos):
    img = photos['chelsea']
    cfg = Config.fromfile(
        osp.join(REPO,
                 'configs/pretrain/conmim_vit-base-p16_8xb256-amp-coslr-300e_in1k.py'))
    _, ds = _views(_pipeline(cfg), img)
    mask = ds.mask
    assert tuple(mask.shape) == (14, 14)
    assert int(mask.sum()) == 4 * math.ceil(49 * 0.75)  # 37 units of 2x2 patches
    units = mask.reshape(7, 2, 7, 2).permute(0, 2, 1, 3).reshape(49, 4)
    assert torch.all((units.sum(1) == 0) | (units.sum(1) == 4))  # 32-px units
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/pretrain',
                 'conmim_vit-base-p16-blockmask_8xb256-amp-coslr-300e_in1k.py'))
    _, ds = _views(_pipeline(cfg), img)
    assert tuple(ds.mask.shape) == (14, 14) and 16 <= int(ds.mask.sum()) <= 75


def _release_block_mask(rng, height=14, width=14, num=75, min_num=16, min_aspect=0.3):
    """The release's MaskingGenerator (ConMIM masking_generator.py), written here
    from its source with a `random.Random` as the release uses Python's `random`."""
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    mask = [[0] * width for _ in range(height)]
    count = 0
    while count < num:
        max_patches = num - count
        delta = 0
        for _ in range(10):
            area = rng.uniform(min_num, max_patches)
            aspect = math.exp(rng.uniform(*log_aspect))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if w < width and h < height:
                top, left = rng.randint(0, height - h), rng.randint(0, width - w)
                masked = sum(mask[i][j] for i in range(top, top + h)
                             for j in range(left, left + w))
                if 0 < h * w - masked <= max_patches:
                    for i in range(top, top + h):
                        for j in range(left, left + w):
                            if mask[i][j] == 0:
                                mask[i][j] = 1
                                delta += 1
                if delta > 0:
                    break
        if delta == 0:
            break
        count += delta
    return torch.tensor(mask)


def test_block_mask_generator_follows_the_release():
    """ConMIMBlockMaskGenerator draws masks as the release: the last row and column
    are reachable and a mask can hold fewer than 75 patches; MMPretrain's
    BEiTMaskGenerator never masks the last row and always masks exactly 75."""
    import random

    import numpy as np
    from mmpretrain.datasets.transforms import BEiTMaskGenerator

    from cmae_mm.datasets.transforms import ConMIMBlockMaskGenerator
    n = 1500
    kwargs = dict(input_size=(14, 14), num_masking_patches=75, min_num_patches=16)
    np.random.seed(0)
    ours = torch.stack([
        torch.from_numpy(ConMIMBlockMaskGenerator(**kwargs).transform({})['mask'])
        for _ in range(n)
    ])
    rng = random.Random(0)
    release = torch.stack([_release_block_mask(rng) for _ in range(n)])
    mmpretrain = torch.stack([
        torch.from_numpy(BEiTMaskGenerator(**kwargs).transform({})['mask'])
        for _ in range(300)
    ])
    for masks in (ours, release):
        counts = masks.flatten(1).sum(1).float()
        assert counts.max() <= 75 and counts.min() < 75
        assert masks[:, -1, :].sum() > 0 and masks[:, :, -1].sum() > 0
    # same distribution: mean count and per-position frequency
    mean_ours, mean_release = (
        m.flatten(1).sum(1).float().mean() for m in (ours, release))
    assert abs(mean_ours - mean_release) < 0.15, (mean_ours, mean_release)
    freq_ours, freq_release = ours.float().mean(0), release.float().mean(0)
    assert (freq_ours - freq_release).abs().max() < 0.08
    assert torch.all(mmpretrain.flatten(1).sum(1) == 75)
    assert mmpretrain[:, -1, :].sum() == 0 and mmpretrain[:, :, -1].sum() == 0


# ------------------------------------------------------------------------ configs
EXPECTED = {  # name: (embed dims, layers, layer scale, epochs, per-GPU batch)
    'conmim_vit-small-p16_8xb256-amp-coslr-300e_in1k.py': (384, 12, 0.1, 300, 256),
    'conmim_vit-base-p16_8xb256-amp-coslr-300e_in1k.py': (768, 12, 0.1, 300, 256),
    'conmim_vit-base-p16-blockmask_8xb256-amp-coslr-300e_in1k.py':
    (768, 12, 0.1, 300, 256),
    'conmim_vit-base-p16_8xb256-amp-coslr-800e_in1k.py': (768, 12, 0.1, 800, 256),
    'conmim_vit-large-p16_32xb64-amp-coslr-400e_in1k.py': (1024, 24, 1e-5, 400, 64),
    'conmim_vit-large-p16_32xb64-amp-coslr-800e_in1k.py': (1024, 24, 1e-5, 800, 64),
    'conmim_vit-large-p16_32xb64-amp-coslr-1600e_in1k.py': (1024, 24, 1e-5, 1600, 64),
    'conmim_vit-tiny-p16_1xb8-20e_demo.py': (192, 4, 0.1, 20, 8),
}


def test_every_conmim_config_builds_its_model():
    names = sorted(osp.basename(p) for p in CONMIM_CFGS)
    assert names == sorted(EXPECTED)
    for path in CONMIM_CFGS:
        cfg = Config.fromfile(path)
        dims, layers, scale, epochs, batch = EXPECTED[osp.basename(path)]
        assert cfg.default_scope == 'mmpretrain'
        assert cfg.custom_imports['imports'] == ['cmae_mm']
        assert cfg.train_cfg.max_epochs == epochs
        assert cfg.param_scheduler[-1]['end'] == epochs
        assert cfg.train_dataloader.batch_size == batch
        assert cfg.train_dataloader.collate_fn == dict(type='default_collate')
        opt = cfg.optim_wrapper
        assert opt.optimizer.betas == (0.9, 0.98) and opt.optimizer.weight_decay == 0.05
        assert opt.clip_grad == dict(max_norm=1.0)
        if 'vit-large' in path:
            assert opt.optimizer.lr == 7.5e-4 and cfg.param_scheduler[0]['end'] == 10
            assert (cfg.train_dataloader.batch_size *
                    32 == cfg.auto_scale_lr.base_batch_size)  # released: 32 GPUs x 64
        with torch.device('meta'):  # every module is constructed, no memory is filled
            model = MODELS.build(cfg.model)
        assert type(model).__name__ == 'ConMIM'
        bb = model.backbone
        assert (bb.embed_dims, bb.num_layers) == (dims, layers)
        assert bb.rel_pos_bias is not None  # one shared relative position bias
        assert bb.layers[0].attn.relative_position_bias_table is None
        assert cfg.model.backbone.layer_scale_init_value == scale
        assert tuple(bb.layers[-1].gamma_2.shape) == (dims, )
        assert model.neck.fc0.in_features == dims and model.neck.fc2.out_features == 256
        assert not model.neck.bn2.affine
        assert model.head.loss_module.temperature == 0.1
        ema = model.target_encoder
        assert (ema.momentum, ema.end_momentum) == (0.004, 0.0)
        assert cfg.custom_hooks == [dict(type='TargetUpdateHook')]
        del model
