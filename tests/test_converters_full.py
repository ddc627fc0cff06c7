"""Whole-pretraining-model converters: official CMAE <-> cmae_mm, official MAE ->
MMPretrain MAE, CMAE initialised from MAE (docs/converters.md).

The official layouts are written here from the official code, not produced by our
converters:
- CMAE (github.com/ZhichengHuang/CMAE): cmae/models/algorithms/cmae.py builds
  ``backbone`` (CMAEViT, final norm ``ln1``), ``target_backbone`` (CMAEViT,
  ``final_norm=False``), ``pixel_decoder`` / ``feature_decoder`` (necks/mae_neck.py:
  ``decoder_embed``, ``mask_token``, ``decoder_pos_embed``, ``decoder_blocks.N``,
  ``ln1``, ``decoder_pred``), ``projector`` / ``target_projector`` and
  ``head.predictor`` (necks/nonlinear_neck.py: ``fc0``, ``bn0``, ``fc1``); blocks are
  backbones/transformer_utils.py (``ln1``, ``attn.qkv``, ``attn.proj``, ``ln2``,
  mmcv FFN ``ffn.layers.0.0`` / ``ffn.layers.1``).
- MAE (github.com/facebookresearch/mae models_mae.py, timm blocks): ``cls_token``,
  ``pos_embed``, ``patch_embed.proj``, ``blocks.N.{norm1, attn.qkv, attn.proj, norm2,
  mlp.fc1, mlp.fc2}``, ``norm``, ``decoder_embed``, ``mask_token``,
  ``decoder_pos_embed``, ``decoder_blocks.N``, ``decoder_norm``, ``decoder_pred``.
"""
import os.path as osp
from collections import OrderedDict

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_CMAE = osp.join(REPO, 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py')
MAE_CFG = osp.join(REPO,
                   'configs/pretrain/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py')
# the tiny demo's sizes: encoder 192-d x 4 blocks, 196 patches of 16 px; decoders
# 128-d (pixel 2 blocks, feature 1 block); projector / predictor 512 -> 128
D, L, N, P, DD, HID, OUT = 192, 4, 196, 16, 128, 512, 128


def _block(prefix, dim, names):
    """A transformer block: {key: shape} with ``names`` for (ln1, qkv, proj, ln2,
    fc1, fc2) in the given layout."""
    ln1, qkv, proj, ln2, fc1, fc2 = names
    shapes = OrderedDict()
    for name, w, b in ((ln1, (dim, ), (dim, )), (qkv, (3 * dim, dim), (3 * dim, )),
                       (proj, (dim, dim), (dim, )), (ln2, (dim, ), (dim, )),
                       (fc1, (4 * dim, dim), (4 * dim, )), (fc2, (dim, 4 * dim),
                                                            (dim, ))):
        shapes[f'{prefix}{name}.weight'] = w
        shapes[f'{prefix}{name}.bias'] = b
    return shapes


MMPRETRAIN_BLOCK = ('ln1', 'attn.qkv', 'attn.proj', 'ln2', 'ffn.layers.0.0',
                    'ffn.layers.1')
TIMM_BLOCK = ('norm1', 'attn.qkv', 'attn.proj', 'norm2', 'mlp.fc1', 'mlp.fc2')


def _vit(prefix, final_norm=True):
    s = OrderedDict([(f'{prefix}cls_token', (1, 1, D)),
                     (f'{prefix}pos_embed', (1, N + 1, D)),
                     (f'{prefix}patch_embed.projection.weight', (D, 3, P, P)),
                     (f'{prefix}patch_embed.projection.bias', (D, ))])
    for i in range(L):
        s.update(_block(f'{prefix}layers.{i}.', D, MMPRETRAIN_BLOCK))
    if final_norm:
        s.update({f'{prefix}ln1.weight': (D, ), f'{prefix}ln1.bias': (D, )})
    return s


def _decoder(prefix, depth, out):
    s = OrderedDict([(f'{prefix}decoder_embed.weight', (DD, D)),
                     (f'{prefix}decoder_embed.bias', (DD, )),
                     (f'{prefix}mask_token', (1, 1, DD)),
                     (f'{prefix}decoder_pos_embed', (1, N + 1, DD))])
    for i in range(depth):
        s.update(_block(f'{prefix}decoder_blocks.{i}.', DD, MMPRETRAIN_BLOCK))
    s.update({
        f'{prefix}ln1.weight': (DD, ),
        f'{prefix}ln1.bias': (DD, ),
        f'{prefix}decoder_pred.weight': (out, DD),
        f'{prefix}decoder_pred.bias': (out, )
    })
    return s


def _neck(prefix, cin):
    # NonLinearNeck(num_layers=2, with_bias=True, with_last_bn=False): fc0 (bias),
    # bn0 (weight, bias, running stats), fc1 (no bias)
    return OrderedDict([(f'{prefix}fc0.weight', (HID, cin)),
                        (f'{prefix}fc0.bias', (HID, )),
                        (f'{prefix}bn0.weight', (HID, )),
                        (f'{prefix}bn0.bias', (HID, )),
                        (f'{prefix}bn0.running_mean', (HID, )),
                        (f'{prefix}bn0.running_var', (HID, )),
                        (f'{prefix}bn0.num_batches_tracked', ()),
                        (f'{prefix}fc1.weight', (OUT, HID))])


def official_cmae_state(seed=0):
    shapes = OrderedDict()
    shapes.update(_vit('backbone.'))
    shapes.update(_vit('target_backbone.', final_norm=False))
    shapes.update(_decoder('pixel_decoder.', 2, P * P * 3))
    shapes.update(_decoder('feature_decoder.', 1, D))
    shapes.update(_neck('projector.', D))
    shapes.update(_neck('target_projector.', D))
    shapes.update(_neck('head.predictor.', OUT))
    g = torch.Generator().manual_seed(seed)
    return OrderedDict(
        (k, torch.tensor(7, dtype=torch.long) if k.
         endswith('num_batches_tracked') else torch.randn(shape, generator=g))
        for k, shape in shapes.items())


@pytest.fixture(scope='module')
def tiny_cmae():
    from cmae_mm.converters.full import build_pretraining_model
    torch.manual_seed(0)
    return build_pretraining_model(TINY_CMAE)


OUR_PLACE = [('backbone.', 'backbone.'),
             ('target_backbone.', 'target_encoder.module.0.'),
             ('pixel_decoder.', 'neck.'), ('feature_decoder.', 'feature_decoder.'),
             ('projector.', 'projector.'),
             ('target_projector.', 'target_encoder.module.1.'),
             ('head.predictor.', 'contrastive_head.predictor.')]


def test_official_cmae_loads_strictly_every_tensor_in_its_place(tiny_cmae):
    from cmae_mm.converters.full import cmae_official_to_cmae_mm
    official = official_cmae_state()
    ours, report = cmae_official_to_cmae_mm(
        official, tiny_cmae.state_dict(), bgr_fix=False, steps=1234)
    tiny_cmae.load_state_dict(ours, strict=True)
    compared = 0
    for key, value in official.items():
        src, dst = next((s, d) for s, d in OUR_PLACE if key.startswith(s))
        assert torch.equal(ours[dst + key[len(src):]], value), key
        compared += 1
    assert compared == len(official)
    assert sorted(report['filled']) == sorted([
        'target_encoder.module.0.ln1.weight', 'target_encoder.module.0.ln1.bias',
        'target_encoder.steps', '_extra_state'
    ])
    assert int(ours['target_encoder.steps']) == 1234
    assert torch.equal(ours['target_encoder.module.0.ln1.weight'],
                       official['backbone.ln1.weight'])


def test_official_cmae_colour_fix(tiny_cmae):
    """BGR fix: both encoders' patch embeddings give, on RGB input, what the release's
    gave on its BGR-ordered input; the pixel decoder's output channels are reversed."""
    from cmae_mm.converters.full import cmae_official_to_cmae_mm
    official = official_cmae_state(seed=1)
    ours, report = cmae_official_to_cmae_mm(official, tiny_cmae.state_dict())
    assert report['colour']
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    rgb = torch.rand(2, 3, 32, 32) * 255
    released_input = (rgb.flip(1) - mean) / std  # the release: BGR, RGB statistics
    our_input = (rgb - mean) / std
    for off, new in (('backbone.', 'backbone.'), ('target_backbone.',
                                                  'target_encoder.module.0.')):
        w, b = (
            official[f'{off}patch_embed.projection.{k}'] for k in ('weight', 'bias'))
        w2, b2 = (ours[f'{new}patch_embed.projection.{k}'] for k in ('weight', 'bias'))
        ref = torch.nn.functional.conv2d(
            released_input.double(), w.double(), b.double(), stride=P)
        got = torch.nn.functional.conv2d(
            our_input.double(), w2.double(), b2.double(), stride=P)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)
    w, w2 = official['pixel_decoder.decoder_pred.weight'], ours[
        'neck.decoder_pred.weight']
    assert torch.equal(w2.view(-1, 3, DD), w.view(-1, 3, DD).flip(1))


def test_round_trip_ours_official_ours_is_exact(tiny_cmae):
    from cmae_mm.converters.full import (cmae_mm_to_cmae_official,
                                         cmae_official_to_cmae_mm)
    ours = {k: v.clone() for k, v in tiny_cmae.state_dict().items()}
    ours['target_encoder.steps'] = torch.tensor(5)
    for bgr in (False, True):
        official, dropped = cmae_mm_to_cmae_official(ours, bgr=bgr)
        assert set(official) == set(official_cmae_state())  # the official key set
        assert sorted(dropped) == sorted([
            'target_encoder.module.0.ln1.weight', 'target_encoder.module.0.ln1.bias',
            'target_encoder.steps', '_extra_state'
        ])
        back, _ = cmae_official_to_cmae_mm(official, ours, bgr_fix=bgr, steps=5)
        for k in ours:
            if k in ('_extra_state', 'target_encoder.module.0.ln1.weight',
                     'target_encoder.module.0.ln1.bias'):
                continue  # no place in the release (listed as dropped above)
            if bgr and 'patch_embed' in k:  # float64 round trip of the colour fix
                torch.testing.assert_close(back[k], ours[k], rtol=1e-6, atol=1e-6)
            else:
                assert torch.equal(back[k], ours[k]), (bgr, k)


def test_converter_fails_naming_a_missing_or_unplaced_tensor(tiny_cmae):
    from cmae_mm.converters.full import cmae_official_to_cmae_mm
    official = official_cmae_state()
    del official['feature_decoder.decoder_pred.bias']
    with pytest.raises(KeyError, match='feature_decoder.decoder_pred.bias'):
        cmae_official_to_cmae_mm(official, tiny_cmae.state_dict(), bgr_fix=False)
    official = official_cmae_state()
    official['head.temperature_log'] = torch.zeros(1)
    with pytest.raises(KeyError, match='head.temperature_log'):
        cmae_official_to_cmae_mm(official, tiny_cmae.state_dict(), bgr_fix=False)


def official_mae_state(seed=0):
    shapes = OrderedDict([('cls_token', (1, 1, D)), ('pos_embed', (1, N + 1, D)),
                          ('patch_embed.proj.weight', (D, 3, P, P)),
                          ('patch_embed.proj.bias', (D, ))])
    for i in range(L):
        shapes.update(_block(f'blocks.{i}.', D, TIMM_BLOCK))
    shapes.update({
        'norm.weight': (D, ),
        'norm.bias': (D, ),
        'decoder_embed.weight': (DD, D),
        'decoder_embed.bias': (DD, ),
        'mask_token': (1, 1, DD),
        'decoder_pos_embed': (1, N + 1, DD)
    })
    for i in range(2):
        shapes.update(_block(f'decoder_blocks.{i}.', DD, TIMM_BLOCK))
    shapes.update({
        'decoder_norm.weight': (DD, ),
        'decoder_norm.bias': (DD, ),
        'decoder_pred.weight': (P * P * 3, DD),
        'decoder_pred.bias': (P * P * 3, )
    })
    g = torch.Generator().manual_seed(seed)
    return OrderedDict((k, torch.randn(s, generator=g)) for k, s in shapes.items())


@pytest.fixture(scope='module')
def tiny_mae(tmp_path_factory):
    """The MAE reference config at the tiny demo's sizes."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(MAE_CFG)
    cfg.model.backbone.arch = dict(
        embed_dims=D, num_layers=L, num_heads=3, feedforward_channels=4 * D)
    cfg.model.neck.update(
        embed_dim=D, decoder_embed_dim=DD, decoder_depth=2, decoder_num_heads=4)
    init_default_scope('mmpretrain')
    return MODELS.build(cfg.model)


def test_official_mae_into_mmpretrain_mae_and_cmae_from_mae(tiny_mae, tiny_cmae):
    from cmae_mm.converters.full import cmae_from_mae, mae_official_to_mae_mm
    official = official_mae_state()
    mae = mae_official_to_mae_mm(official, tiny_mae.state_dict())
    tiny_mae.load_state_dict(mae, strict=True)
    assert torch.equal(mae['backbone.layers.3.ffn.layers.0.0.weight'],
                       official['blocks.3.mlp.fc1.weight'])
    assert torch.equal(mae['neck.decoder_blocks.1.ln2.bias'],
                       official['decoder_blocks.1.norm2.bias'])
    assert torch.equal(mae['neck.ln1.weight'], official['decoder_norm.weight'])
    assert torch.equal(mae['backbone.ln1.weight'], official['norm.weight'])
    assert len(mae) == len(official)

    fresh = {k: v.clone() for k, v in tiny_cmae.state_dict().items()}
    cmae, initialised = cmae_from_mae(mae, fresh)
    tiny_cmae.load_state_dict(cmae, strict=True)
    for key, value in mae.items():
        assert torch.equal(cmae[key], value), key  # online encoder, pixel decoder
        if key.startswith('backbone.'):
            target = 'target_encoder.module.0.' + key[len('backbone.'):]
            assert torch.equal(cmae[target], value), target
    assert {k.split('.')[0]
            for k in initialised} == {
                'feature_decoder', 'projector', 'contrastive_head', 'target_encoder',
                '_extra_state'
            }
    for k in initialised:
        assert torch.equal(cmae[k], fresh[k]), k


@pytest.mark.e2e
def test_converted_official_checkpoint_continues_with_its_own_target(
        tiny_cmae, run_tool, photo_folder, tmp_path):
    """tools/model_converters/cmae_official_to_cmae_mm.py --full, then tools/train.py
    with load_from: the first update starts from the CONVERTED target (not a copy of
    the online encoder): after one step, target = m t_0 + (1 - m) theta_1."""
    official = official_cmae_state(seed=3)
    src = tmp_path / 'official.pth'
    torch.save({'meta': {'epoch': 10, 'iter': 500}, 'state_dict': official}, src)
    converted = tmp_path / 'cmae_mm.pth'
    proc, _ = run_tool([
        'tools/model_converters/cmae_official_to_cmae_mm.py', src, converted, '--full',
        '--config', TINY_CMAE, '--no-bgr-fix'
    ])
    assert 'Converted' in proc.stdout
    work = tmp_path / 'work'
    run_tool([
        'tools/train.py', TINY_CMAE, '--work-dir', work, '--cfg-options',
        f'load_from={converted}', f'train_dataloader.dataset.data_root={photo_folder}',
        'train_cfg.max_iters=1', 'default_hooks.checkpoint.interval=1',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False'
    ])
    after = torch.load(work / 'iter_1.pth', map_location='cpu')['state_dict']
    t0 = official['target_backbone.layers.0.attn.qkv.weight']
    theta1 = after['backbone.layers.0.attn.qkv.weight']
    m = 0.99  # the tiny config's base_momentum 0.01
    torch.testing.assert_close(
        after['target_encoder.module.0.layers.0.attn.qkv.weight'],
        m * t0 + (1 - m) * theta1,
        rtol=1e-5,
        atol=1e-6)
    assert int(after['target_encoder.steps']) == 501
