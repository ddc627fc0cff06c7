"""PretrainedEncoder: downstream encoders load every tensor of a pretraining
checkpoint (compared tensor by tensor) or fail naming what is missing."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.model import BaseModule
from mmengine.registry import init_default_scope
from torch import nn

import cmae_mm  # noqa: F401
from cmae_mm.testing import run_subprocess
from cmae_mm.transfer.weight_loading import PretrainedEncoder, load_pretrained_encoder

TINY = dict(embed_dims=192, num_layers=4, num_heads=3, feedforward_channels=768)
CLS_CFG = 'configs/cls/cmae_vit-base-p16_8xb128-coslr-100e_in1k.py'
CONMIM_CFG = 'configs/cls/conmim_vit-base-p16_8xb128-coslr-100e_in1k.py'


def _noisy(state_dict, gen):
    """Perturb every float tensor so that no loaded value equals a fresh init."""
    return {
        k: (v + 0.05 * torch.randn(v.shape, generator=gen)
            if v.is_floating_point() else v.clone())
        for k, v in state_dict.items()
    }


def synthetic_pretrain_checkpoint(path, kind='cmae', img_size=224, seed=0):
    """A pretraining checkpoint with cmae_mm's keys (docs/checkpoints.md): online
    encoder
    ``backbone.*``, target ``target_encoder.module.0.*`` + projector ``.module.1.*``,
    and a decoder; CMAE: MAEViT online / no-final-norm ViT target; ConMIM:
    BEiTPretrainViT (shared relative position table, layer scale) for both."""
    from mmpretrain.models import BEiTPretrainViT, MAEViT, VisionTransformer
    gen = torch.Generator().manual_seed(seed)
    if kind == 'cmae':
        online = MAEViT(arch=TINY, img_size=img_size)
        target = VisionTransformer(arch=TINY, img_size=img_size, final_norm=False)
    else:
        online = BEiTPretrainViT(arch=TINY, img_size=img_size)
        target = BEiTPretrainViT(arch=TINY, img_size=img_size)
    sd = {}
    for prefix, module in (('backbone.', online), ('target_encoder.module.0.', target),
                           ('target_encoder.module.1.',
                            nn.Sequential(nn.Linear(192, 32), nn.BatchNorm1d(32)))):
        sd.update((prefix + k, v) for k, v in _noisy(module.state_dict(), gen).items())
    sd['pixel_decoder.decoder_embed.weight'] = torch.randn(16, 192, generator=gen)
    torch.save({'meta': dict(epoch=1), 'state_dict': sd}, path)
    return sd


@pytest.fixture(scope='module')
def cmae_ckpt(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('ckpt') / 'cmae_tiny.pth')
    return path, synthetic_pretrain_checkpoint(path, 'cmae')


@pytest.fixture(scope='module')
def conmim_ckpt(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('ckpt') / 'conmim_tiny.pth')
    return path, synthetic_pretrain_checkpoint(path, 'conmim')


def tiny_cls_model(repo_root, config, ckpt, img_size=64, **init):
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(osp.join(repo_root, config))
    opts = {'model.backbone.arch.' + k: v for k, v in TINY.items()}
    opts.update({
        'model.backbone.img_size': img_size,
        'model.head.in_channels': 192,
        'model.backbone.init_cfg.checkpoint': ckpt
    })
    opts.update({'model.backbone.init_cfg.' + k: v for k, v in init.items()})
    cfg.merge_from_dict(opts)
    return MODELS.build(cfg.model)


def encoder_of(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def bicubic_resize_pos_embed(pos_embed, src, dst):
    """(1, 1 + src*src, C) -> (1, 1 + dst*dst, C), cls token kept (independent)."""
    cls_tok, grid = pos_embed[:, :1], pos_embed[:, 1:]
    c = grid.shape[-1]
    grid = grid.reshape(1, src, src, c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(dst, dst), mode='bicubic', align_corners=False)
    return torch.cat([cls_tok, grid.flatten(2).transpose(1, 2)], dim=1)


@pytest.mark.parametrize('encoder, prefix', [('online', 'backbone.'),
                                             ('target', 'target_encoder.module.0.')])
def test_cls_model_loads_every_encoder_tensor(repo_root, cmae_ckpt, encoder, prefix):
    path, sd = cmae_ckpt
    model = tiny_cls_model(repo_root, CLS_CFG, path, encoder=encoder)
    model.init_weights()
    expected = encoder_of(sd, prefix)
    got = model.backbone.state_dict()
    # the fine-tuning backbone has exactly the encoder's tensors + the new pooling norm
    assert set(got) - set(expected) == {'ln2.weight', 'ln2.bias'}
    for key, value in got.items():
        if key.startswith('ln2.'):
            continue
        if key == 'pos_embed':  # 224 px (14x14) -> 64 px (4x4)
            value_ref = bicubic_resize_pos_embed(expected[key], 14, 4)
            torch.testing.assert_close(value, value_ref)
        else:
            torch.testing.assert_close(value, expected[key], rtol=0, atol=0)
    # online and target differ, so the right one was taken
    other = encoder_of(
        sd, 'target_encoder.module.0.' if encoder == 'online' else 'backbone.')
    assert not torch.equal(got['layers.0.attn.qkv.weight'],
                           other['layers.0.attn.qkv.weight'])
    # the head is still freshly initialised (tiny std 2e-5)
    assert model.head.fc.weight.abs().max() < 1e-3


def test_missing_tensor_fails_naming_it(repo_root, cmae_ckpt, tmp_path):
    _, sd = cmae_ckpt
    broken = dict(sd)
    del broken['backbone.layers.2.attn.qkv.weight']
    path = str(tmp_path / 'broken.pth')
    torch.save({'state_dict': broken}, path)
    model = tiny_cls_model(repo_root, CLS_CFG, path)
    with pytest.raises(KeyError, match=r'layers\.2\.attn\.qkv\.weight'):
        model.init_weights()


def test_wrong_layout_and_no_checkpoint_fail(repo_root, cmae_ckpt, tmp_path):
    _, sd = cmae_ckpt
    path = str(tmp_path / 'classifier_style.pth')
    torch.save({'state_dict': {'model.' + k: v for k, v in sd.items()}}, path)
    with pytest.raises(KeyError, match=r"top-level prefixes \['model\.'\]"):
        tiny_cls_model(repo_root, CLS_CFG, path).init_weights()
    with pytest.raises(ValueError, match='model.backbone.init_cfg.checkpoint'):
        tiny_cls_model(repo_root, CLS_CFG, None).init_weights()


def test_generic_backbone_children_do_not_overwrite(cmae_ckpt, tmp_path):
    """Any BaseModule backbone can use the initialiser; its children's own inits
    (run after non-'Pretrained' initialisers by MMEngine) must not overwrite, and an
    ``adapt_pretrained_state_dict`` hook is honoured."""
    gen = torch.Generator().manual_seed(1)
    sd = {
        'backbone.old_proj.weight': torch.randn(4, 3, generator=gen),
        'backbone.old_proj.bias': torch.randn(4, generator=gen),
        'backbone.child.fc.weight': torch.randn(2, 4, generator=gen),
        'backbone.child.fc.bias': torch.randn(2, generator=gen)
    }
    path = str(tmp_path / 'toy.pth')
    torch.save({'state_dict': sd}, path)

    class Child(BaseModule):

        def __init__(self):
            super().__init__(init_cfg=dict(type='Constant', layer='Linear', val=0.))
            self.fc = nn.Linear(4, 2)

    class Toy(BaseModule):

        def __init__(self, init_cfg):
            super().__init__(init_cfg)
            self.proj = nn.Linear(3, 4)
            self.child = Child()

        def adapt_pretrained_state_dict(self, state_dict):
            return {k.replace('old_proj.', 'proj.'): v for k, v in state_dict.items()}

    toy = Toy(dict(type='PretrainedEncoder', checkpoint=path))
    toy.init_weights()
    torch.testing.assert_close(toy.proj.weight, sd['backbone.old_proj.weight'])
    torch.testing.assert_close(toy.child.fc.weight, sd['backbone.child.fc.weight'])
    torch.testing.assert_close(toy.child.fc.bias, sd['backbone.child.fc.bias'])
    # direct use of the initialiser object on a plain nn.Module works too
    plain = nn.Module()
    plain.proj, plain.child = nn.Linear(3, 4), nn.Module()
    plain.child.fc = nn.Linear(4, 2)
    plain.adapt_pretrained_state_dict = Toy.adapt_pretrained_state_dict.__get__(plain)
    PretrainedEncoder(path)(plain)
    torch.testing.assert_close(plain.proj.bias, sd['backbone.old_proj.bias'])


def test_conmim_relative_position_tables(repo_root, conmim_ckpt):
    """ConMIM (BEiT) encoders: the shared relative position table of the pretraining
    is copied into every block (BEiT's fine-tuning init); layer scale, q/v biases and
    all other tensors are loaded; index buffers are recomputed, not loaded."""
    path, sd = conmim_ckpt
    model = tiny_cls_model(repo_root, CONMIM_CFG, path, img_size=224)
    model.init_weights()
    expected = encoder_of(sd, 'target_encoder.module.0.')  # ConMIM default: target
    got = model.backbone.state_dict()
    shared = expected['rel_pos_bias.relative_position_bias_table']
    for i in range(TINY['num_layers']):
        torch.testing.assert_close(
            got[f'layers.{i}.attn.relative_position_bias_table'],
            shared,
            rtol=0,
            atol=0)
    compared = 0
    for key, value in got.items():
        if key in expected:
            torch.testing.assert_close(value, expected[key], rtol=0, atol=0)
            compared += 1
    # every encoder tensor except the shared table/index, mask token and final norm
    not_used = {
        'rel_pos_bias.relative_position_bias_table',
        'rel_pos_bias.relative_position_index', 'mask_token', 'ln1.weight', 'ln1.bias'
    }
    assert compared == len(set(expected) - not_used)
    assert 'layers.0.gamma_1' in got and 'layers.0.attn.q_bias' in got

    # at 64 px the 14x14-window table is resized to the 4x4 window of each block
    small = tiny_cls_model(repo_root, CONMIM_CFG, path, img_size=64)
    small.init_weights()
    table = small.backbone.state_dict()['layers.3.attn.relative_position_bias_table']
    assert table.shape == ((2 * 4 - 1)**2 + 3, TINY['num_heads'])
    torch.testing.assert_close(table[-3:], shared[-3:])  # cls-token entries kept
    # offsets 0 and +-1 are nodes of BEiT's geometric grid, so the spline reproduces
    # them exactly; (row, col) = (dy + 6, dx + 6) in the 7x7 grid, + 13 in 27x27
    for dy, dx in [(0, 0), (1, 0), (0, -1), (-1, 1)]:
        torch.testing.assert_close(
            table[(dy + 3) * 7 + dx + 3],
            shared[(dy + 13) * 27 + dx + 13],
            rtol=1e-4,
            atol=1e-5)


def test_load_pretrained_encoder_returns_what_it_loaded(cmae_ckpt):
    from mmpretrain.models import VisionTransformer
    path, sd = cmae_ckpt
    vit = VisionTransformer(arch=TINY, img_size=224, final_norm=True)
    loaded = load_pretrained_encoder(vit, path, 'online')
    assert set(loaded) == set(encoder_of(sd, 'backbone.'))
    for key, value in vit.state_dict().items():
        torch.testing.assert_close(value, sd['backbone.' + key], rtol=0, atol=0)


@pytest.mark.e2e
def test_real_conmim_checkpoint_into_cls_and_seg(repo_root, run_env, photo_folder,
                                                 tmp_path):
    """A real tiny ConMIM pretraining run
    (configs/pretrain/conmim_vit-tiny-p16_1xb8-20e_demo.py,
    1 epoch = 2 iterations) loads into the ConMIM classification and segmentation
    configs: their momentum (target) encoders equal the checkpoint's, tensor by tensor,
    relative position tables expanded per block (and resized for segmentation)."""
    from mmseg.registry import MODELS as SEG_MODELS

    from cmae_mm.engine.checkpoint import load_checkpoint_weights_only
    work = str(tmp_path / 'conmim')
    run_subprocess([
        'tools/train.py', 'configs/pretrain/conmim_vit-tiny-p16_1xb8-20e_demo.py',
        '--work-dir', work, '--cfg-options',
        f'train_dataloader.dataset.data_root={photo_folder}', 'train_cfg.max_epochs=1',
        'param_scheduler.0.end=1', 'param_scheduler.1.begin=1',
        'param_scheduler.1.end=2', 'default_hooks.checkpoint.interval=1'
    ],
                   run_env,
                   repo_root,
                   timeout=300)
    path = osp.join(work, 'epoch_1.pth')
    expected = encoder_of(
        load_checkpoint_weights_only(path), 'target_encoder.module.0.')
    shared = expected['rel_pos_bias.relative_position_bias_table']

    cls_model = tiny_cls_model(repo_root, CONMIM_CFG, path, img_size=224)
    cls_model.init_weights()
    got = cls_model.backbone.state_dict()
    for key, value in got.items():
        if key in expected:
            torch.testing.assert_close(value, expected[key], rtol=0, atol=0)
    for i in range(TINY['num_layers']):
        torch.testing.assert_close(
            got[f'layers.{i}.attn.relative_position_bias_table'],
            shared,
            rtol=0,
            atol=0)

    init_default_scope('mmseg')
    cfg = Config.fromfile(
        osp.join(repo_root,
                 'configs/seg/conmim_vit-base-p16_upernet_8xb2-160k_ade20k-512x512.py'))
    opts = {'model.backbone.arch.' + k: v for k, v in TINY.items()}
    opts.update({
        'model.backbone.img_size': (64, 64),
        'model.backbone.out_indices': [0, 1, 2, 3],
        'model.backbone.init_cfg.checkpoint': path,
        'model.neck.embed_dim': 192,
        'model.decode_head.in_channels': [192] * 4,
        'model.auxiliary_head.in_channels': 192
    })
    cfg.merge_from_dict(opts)
    seg = SEG_MODELS.build(cfg.model)
    seg.init_weights()
    got = seg.backbone.state_dict()
    compared = 0
    for key, value in got.items():
        if key in expected:
            torch.testing.assert_close(value, expected[key], rtol=0, atol=0)
            compared += 1
    assert compared == len(
        set(expected) - {
            'rel_pos_bias.relative_position_bias_table',
            'rel_pos_bias.relative_position_index', 'mask_token', 'ln1.weight',
            'ln1.bias'
        })
    table = got['layers.0.attn.relative_position_bias_table']
    assert table.shape == ((2 * 4 - 1)**2 + 3, TINY['num_heads'])
    torch.testing.assert_close(table[3 * 7 + 3], shared[13 * 27 + 13])
