"""tools/model_converters on synthetic state dicts in the official layouts (MAE timm
names, CMAE release, ConMIM/BEiT), fabricated here with the real shapes: round trip
into our encoders, failure on a missing key, the exact BGR -> RGB patch-embedding
fix."""
import contextlib
import io
import os.path as osp
import runpy
import sys

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope

import cmae_mm  # noqa: F401
from cmae_mm.converters.encoders import (check_encoder, convert_beit_official,
                                         convert_cmae_official, convert_mae_official,
                                         fix_bgr_patch_embed)
from cmae_mm.engine.checkpoint import load_checkpoint_weights_only
from cmae_mm.testing import run_subprocess
from cmae_mm.transfer.weight_loading import load_pretrained_encoder

D, L, FF, P = 192, 2, 768, 16  # tiny ViT: width, depth, mlp width, patch
N = 14 * 14


def _t(gen, *shape):
    return torch.randn(*shape, generator=gen)


def mae_official_state_dict(seed=0):
    """facebookresearch/mae ``mae_vit_*`` pretraining model, timm names."""
    g = torch.Generator().manual_seed(seed)
    sd = {
        'cls_token': _t(g, 1, 1, D),
        'pos_embed': _t(g, 1, N + 1, D),
        'mask_token': _t(g, 1, 1, 128),
        'patch_embed.proj.weight': _t(g, D, 3, P, P),
        'patch_embed.proj.bias': _t(g, D),
        'norm.weight': _t(g, D),
        'norm.bias': _t(g, D),
        'decoder_embed.weight': _t(g, 128, D),
        'decoder_pos_embed': _t(g, 1, N + 1, 128),
        'decoder_blocks.0.norm1.weight': _t(g, 128),
        'decoder_pred.weight': _t(g, P * P * 3, 128)
    }
    for i in range(L):
        b = f'blocks.{i}.'
        sd.update({
            b + 'norm1.weight': _t(g, D),
            b + 'norm1.bias': _t(g, D),
            b + 'attn.qkv.weight': _t(g, 3 * D, D),
            b + 'attn.qkv.bias': _t(g, 3 * D),
            b + 'attn.proj.weight': _t(g, D, D),
            b + 'attn.proj.bias': _t(g, D),
            b + 'norm2.weight': _t(g, D),
            b + 'norm2.bias': _t(g, D),
            b + 'mlp.fc1.weight': _t(g, FF, D),
            b + 'mlp.fc1.bias': _t(g, FF),
            b + 'mlp.fc2.weight': _t(g, D, FF),
            b + 'mlp.fc2.bias': _t(g, D)
        })
    return sd


def conmim_official_state_dict(seed=0):
    """TencentARC/ConMIM ``conmim_*_patch16_224`` (BEiT code): shared relative
    position bias, layer scale, q/v biases, lm_head and projectors."""
    g = torch.Generator().manual_seed(seed)
    heads = 3
    num_rel = (2 * 14 - 1)**2 + 3
    sd = {
        'cls_token':
        _t(g, 1, 1, D),
        'mask_token':
        _t(g, 1, 1, D),
        'patch_embed.proj.weight':
        _t(g, D, 3, P, P),
        'patch_embed.proj.bias':
        _t(g, D),
        'rel_pos_bias.relative_position_bias_table':
        _t(g, num_rel, heads),
        'rel_pos_bias.relative_position_index':
        torch.randint(0, num_rel, (N + 1, N + 1), generator=g),
        'norm.weight':
        _t(g, D),
        'norm.bias':
        _t(g, D),
        'lm_head.weight':
        _t(g, 8192, D),
        'lm_head.bias':
        _t(g, 8192),
        'projectors.0.weight':
        _t(g, 64, D)
    }
    for i in range(L):
        b = f'blocks.{i}.'
        sd.update({
            b + 'gamma_1': _t(g, D),
            b + 'gamma_2': _t(g, D),
            b + 'norm1.weight': _t(g, D),
            b + 'norm1.bias': _t(g, D),
            b + 'attn.qkv.weight': _t(g, 3 * D, D),
            b + 'attn.q_bias': _t(g, D),
            b + 'attn.v_bias': _t(g, D),
            b + 'attn.proj.weight': _t(g, D, D),
            b + 'attn.proj.bias': _t(g, D),
            b + 'norm2.weight': _t(g, D),
            b + 'norm2.bias': _t(g, D),
            b + 'mlp.fc1.weight': _t(g, FF, D),
            b + 'mlp.fc1.bias': _t(g, FF),
            b + 'mlp.fc2.weight': _t(g, D, FF),
            b + 'mlp.fc2.bias': _t(g, D)
        })
    return sd


def cmae_official_state_dict(seed=0):
    """ZhichengHuang/CMAE pretraining checkpoint: MMCls-0.x ViT keys under
    ``backbone.`` (online) and ``target_backbone.`` (momentum), plus the rest."""
    g = torch.Generator().manual_seed(seed)
    enc = {
        k: v
        for k, v in convert_mae_official(mae_official_state_dict(seed))[0].items()
    }
    sd = {'backbone.' + k: v for k, v in enc.items()}
    sd.update({'target_backbone.' + k: v + 1.0 for k, v in enc.items()})
    sd.update({
        'projector.mlp.0.weight': _t(g, 64, D),
        'pixel_decoder.mask_token': _t(g, 1, 1, 128),
        'target_projector.mlp.0.weight': _t(g, 64, D)
    })
    return sd


# timm name -> our name, spelled out for block 1 (independent of the converter's rules)
MAE_MAP = {
    'blocks.1.norm1.weight': 'layers.1.ln1.weight',
    'blocks.1.attn.qkv.bias': 'layers.1.attn.qkv.bias',
    'blocks.1.attn.proj.weight': 'layers.1.attn.proj.weight',
    'blocks.1.norm2.bias': 'layers.1.ln2.bias',
    'blocks.1.mlp.fc1.weight': 'layers.1.ffn.layers.0.0.weight',
    'blocks.1.mlp.fc2.bias': 'layers.1.ffn.layers.1.bias',
    'patch_embed.proj.weight': 'patch_embed.projection.weight',
    'norm.weight': 'ln1.weight',
    'cls_token': 'cls_token',
    'pos_embed': 'pos_embed'
}


class _Result:

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_converter(repo_root, run_env, script, *args, subprocess_run=False):
    """Run a converter script: in a subprocess, or (faster, same code path) in this
    process as ``__main__`` with its command line."""
    path = osp.join(repo_root, 'tools/model_converters', script)
    if subprocess_run:
        return run_subprocess([path, *args],
                              run_env,
                              repo_root,
                              timeout=300,
                              check=False)[0]
    out, err, code = io.StringIO(), io.StringIO(), 0
    argv = sys.argv
    sys.argv = [path, *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(path, run_name='__main__')
    except SystemExit as e:
        code = e.code or 0
    except Exception as e:  # noqa: BLE001  (a failing conversion = non-zero exit)
        code, _ = 1, err.write(f'{type(e).__name__}: {e}')
    finally:
        sys.argv = argv
    return _Result(code, out.getvalue(), err.getvalue())


@pytest.mark.e2e
def test_mae_official_round_trip(repo_root, run_env, tmp_path):
    from mmpretrain.models import VisionTransformer
    src = mae_official_state_dict()
    src_file, out = str(tmp_path / 'mae.pth'), str(tmp_path / 'mae_cmae_mm.pth')
    torch.save({'model': src}, src_file)
    proc = run_converter(
        repo_root,
        run_env,
        'mae_official_to_cmae_mm.py',
        src_file,
        out,
        subprocess_run=True)  # once as a real command line
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'decoder_embed.weight' in proc.stdout and 'mask_token' in proc.stdout
    converted = load_checkpoint_weights_only(out)
    assert all(k.startswith('backbone.') for k in converted)
    for theirs, ours in MAE_MAP.items():
        torch.testing.assert_close(
            converted['backbone.' + ours], src[theirs], rtol=0, atol=0)
    # every encoder tensor of the source is in the output, none invented
    assert len(converted) == len(
        [k for k in src if not k.startswith(('decoder', 'mask_token'))])
    # the downstream loader takes it and the ViT then equals the source
    vit = VisionTransformer(
        arch=dict(embed_dims=D, num_layers=L, num_heads=3, feedforward_channels=FF),
        final_norm=True)
    load_pretrained_encoder(vit, out, 'online')
    torch.testing.assert_close(
        vit.layers[1].ffn.layers[1].weight,
        src['blocks.1.mlp.fc2.weight'],
        rtol=0,
        atol=0)


def test_mae_official_missing_key_fails(repo_root, run_env, tmp_path):
    src = mae_official_state_dict()
    del src['blocks.1.norm2.weight']
    with pytest.raises(KeyError, match=r'layers\.1\.ln2\.weight'):
        check_encoder(convert_mae_official(src)[0])
    src_file = str(tmp_path / 'mae_broken.pth')
    torch.save({'model': src}, src_file)
    proc = run_converter(repo_root, run_env, 'mae_official_to_cmae_mm.py', src_file,
                         str(tmp_path / 'out.pth'))
    assert proc.returncode != 0 and 'layers.1.ln2.weight' in proc.stderr
    assert not osp.exists(tmp_path / 'out.pth')


def test_conmim_official_round_trip_into_finetune_model(repo_root, run_env, tmp_path):
    """--as target, then the ConMIM fine-tuning config (default encoder='target')
    loads it: every block gets the shared table, gammas and q/v biases match."""
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    src = conmim_official_state_dict()
    src_file, out = str(tmp_path / 'conmim.pth'), str(tmp_path / 'conmim_cmae_mm.pth')
    torch.save({'model': src, 'epoch': 10}, src_file)
    proc = run_converter(repo_root, run_env, 'conmim_official_to_cmae_mm.py', src_file,
                         out, '--as', 'target')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'lm_head.weight' in proc.stdout  # dropped, and said so
    converted = load_checkpoint_weights_only(out)
    assert all(k.startswith('target_encoder.module.0.') for k in converted)
    cfg = Config.fromfile(
        osp.join(repo_root,
                 'configs/cls/conmim_vit-base-p16_8xb128-coslr-100e_in1k.py'))
    cfg.merge_from_dict({
        'model.backbone.arch.embed_dims': D,
        'model.backbone.arch.num_layers': L,
        'model.backbone.arch.num_heads': 3,
        'model.backbone.arch.feedforward_channels': FF,
        'model.head.in_channels': D,
        'model.backbone.init_cfg.checkpoint': out
    })
    model = MODELS.build(cfg.model)
    model.init_weights()
    bb = model.backbone
    for i in range(L):
        torch.testing.assert_close(bb.layers[i].attn.relative_position_bias_table,
                                   src['rel_pos_bias.relative_position_bias_table'])
        torch.testing.assert_close(bb.layers[i].gamma_1, src[f'blocks.{i}.gamma_1'])
        torch.testing.assert_close(bb.layers[i].attn.q_bias,
                                   src[f'blocks.{i}.attn.q_bias'])
        torch.testing.assert_close(bb.layers[i].ffn.layers[0][0].weight,
                                   src[f'blocks.{i}.mlp.fc1.weight'])
    torch.testing.assert_close(bb.patch_embed.projection.weight,
                               src['patch_embed.proj.weight'])
    torch.testing.assert_close(bb.cls_token, src['cls_token'])
    # missing layer scale -> failure naming it
    del src['blocks.0.gamma_2']
    with pytest.raises(KeyError, match=r'layers\.0\.gamma_2'):
        check_encoder(convert_beit_official(src)[0])


def test_bgr_fix_is_exact():
    """The released CMAE pipeline fed BGR pixels normalised with RGB statistics; the
    fixed patch embedding gives the same output on correctly normalised RGB input."""
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(8, 3, P, P, generator=g), torch.randn(8, generator=g)
    rgb = torch.rand(2, 3, 32, 32, generator=g) * 255
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    released_input = (rgb.flip(1) - mean) / std  # BGR order, RGB statistics
    our_input = (rgb - mean) / std
    new_w, new_b = fix_bgr_patch_embed(w, b)
    torch.testing.assert_close(
        F.conv2d(our_input, new_w, new_b, stride=P),
        F.conv2d(released_input, w, b, stride=P),
        rtol=1e-4,
        atol=1e-3)
    assert not torch.allclose(new_w, w)


def test_cmae_official_round_trip(repo_root, run_env, tmp_path):
    src = cmae_official_state_dict()
    src_file, out = str(tmp_path / 'cmae.pth'), str(tmp_path / 'cmae_cmae_mm.pth')
    torch.save({'state_dict': src, 'meta': {'epoch': 300}}, src_file)
    proc = run_converter(repo_root, run_env, 'cmae_official_to_cmae_mm.py', src_file,
                         out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    converted = load_checkpoint_weights_only(out)
    for ours, theirs in (('backbone.', 'backbone.'), ('target_encoder.module.0.',
                                                      'target_backbone.')):
        for key in ('layers.1.attn.qkv.weight', 'ln1.bias', 'pos_embed'):
            torch.testing.assert_close(
                converted[ours + key], src[theirs + key], rtol=0, atol=0)
        fixed_w, fixed_b = fix_bgr_patch_embed(
            src[theirs + 'patch_embed.projection.weight'],
            src[theirs + 'patch_embed.projection.bias'])
        torch.testing.assert_close(converted[ours + 'patch_embed.projection.weight'],
                                   fixed_w)
        torch.testing.assert_close(converted[ours + 'patch_embed.projection.bias'],
                                   fixed_b)
    assert not any('projector' in k or 'decoder' in k for k in converted)
    # --no-bgr-fix keeps the released weights as they are
    out2 = str(tmp_path / 'nofix.pth')
    proc = run_converter(repo_root, run_env, 'cmae_official_to_cmae_mm.py', src_file,
                         out2, '--no-bgr-fix')
    assert proc.returncode == 0, proc.stderr[-3000:]
    torch.testing.assert_close(
        load_checkpoint_weights_only(out2)['backbone.patch_embed.projection.weight'],
        src['backbone.patch_embed.projection.weight'],
        rtol=0,
        atol=0)
    # extracted-backbone files (bare keys) are the online encoder; a missing key fails
    bare = {
        k[len('backbone.'):]: v
        for k, v in src.items() if k.startswith('backbone.')
    }
    encoders, _ = convert_cmae_official(bare)
    assert list(encoders) == ['online']
    del encoders['online']['layers.0.attn.proj.bias']
    with pytest.raises(KeyError, match=r'layers\.0\.attn\.proj\.bias'):
        check_encoder(encoders['online'])


def test_extract_encoder_tool(repo_root, run_env, tmp_path):
    """cmae_mm pretraining checkpoint -> encoder-only file; target encoder by flag."""
    enc = convert_mae_official(mae_official_state_dict())[0]
    sd = {'backbone.' + k: v for k, v in enc.items()}
    sd.update({
        'target_encoder.module.0.' + k: v + 2.0
        for k, v in enc.items() if not k.startswith('ln1.')
    })  # CMAE target: no final norm
    sd['target_encoder.module.1.0.weight'] = torch.zeros(4, D)
    sd['pixel_decoder.decoder_embed.weight'] = torch.zeros(4, D)
    src = str(tmp_path / 'pretrain.pth')
    torch.save({'meta': {}, 'state_dict': sd}, src)
    out = str(tmp_path / 'target.pth')
    proc = run_converter(repo_root, run_env, 'extract_encoder.py', src, out,
                         '--encoder', 'target')
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = load_checkpoint_weights_only(out)
    assert set(got) == {'backbone.' + k for k in enc if not k.startswith('ln1.')}
    torch.testing.assert_close(
        got['backbone.layers.0.attn.qkv.weight'],
        sd['target_encoder.module.0.layers.0.attn.qkv.weight'],
        rtol=0,
        atol=0)
