"""compile_blocks (cmae_mm/models/utils/compile.py): which blocks it compiles, state
dicts unchanged, the compiled step equal to the eager one within float32 rounding, the
config key through CheckedRunner / tools/train.py --compile-blocks."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from torch import nn

from cmae_mm.engine.runner import apply_compile_blocks
from cmae_mm.models.utils import compile_blocks

TINY_CMAE = 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py'
TINY_CONMIM = 'configs/pretrain/conmim_vit-tiny-p16_1xb8-20e_demo.py'


def _build(registry, repo_root: str, config: str) -> nn.Module:
    cfg = Config.fromfile(osp.join(repo_root, config))
    torch.manual_seed(0)
    model = revert_sync_batchnorm(registry.build(cfg.model))
    model.init_weights()
    return model.train()


def test_no_block_is_an_error():
    with pytest.raises(
            TypeError, match='Linear has no transformer block.*'
            'compile_blocks=False'):
        compile_blocks(nn.Linear(2, 2))


def test_blocks_found_by_type(registry, repo_root):
    """The encoders', decoders' and targets' blocks of both algorithms, nothing
    else; a lazily compiling backend, so nothing is compiled here."""
    cmae = _build(registry, repo_root, TINY_CMAE)
    names = compile_blocks(cmae, backend='eager')
    assert names == [f'backbone.layers.{i}' for i in range(4)] + [
        'neck.decoder_blocks.0', 'neck.decoder_blocks.1',
        'feature_decoder.decoder_blocks.0'
    ] + [f'target_encoder.module.0.layers.{i}' for i in range(4)]
    assert all(cmae.get_submodule(n)._compiled_call_impl is not None for n in names)
    conmim = _build(registry, repo_root, TINY_CONMIM)
    layers = len(conmim.backbone.layers)
    names = compile_blocks(conmim, backend='eager')  # BEiTTransformerEncoderLayer
    assert names == [f'backbone.layers.{i}' for i in range(layers)
                     ] + [f'target_encoder.module.0.layers.{i}' for i in range(layers)]


def test_each_block_is_one_graph(registry, repo_root):
    """No graph break inside a block (mmcv's DropPath holds MMPretrain's numpy
    drop-path rate, which Dynamo breaks on until compile_blocks makes it a float):
    the encoder and decoder blocks of CMAE, the BEiT block of ConMIM."""
    cmae = _build(registry, repo_root, TINY_CMAE)
    conmim = _build(registry, repo_root, TINY_CONMIM)
    compile_blocks(cmae, backend='eager')
    compile_blocks(conmim, backend='eager')
    x = torch.randn(2, 197, 192)
    cases = [(cmae.backbone.layers[0], (x, )),
             (cmae.neck.decoder_blocks[0], (torch.randn(2, 197, 128), )),
             (conmim.backbone.layers[0], (x, conmim.backbone.rel_pos_bias()))]
    for block, inputs in cases:
        assert all(type(getattr(m, 'drop_prob', 0.)) is float for m in block.modules())
        explained = torch._dynamo.explain(block.forward)(*inputs)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), \
            explained.break_reasons


def test_config_key(registry, repo_root):
    model = nn.Sequential(nn.Linear(2, 2))
    assert apply_compile_blocks(Config(dict(compile_blocks=False)), model) == []
    with pytest.raises(ValueError, match='both set: choose one'):
        apply_compile_blocks(Config(dict(compile=True, compile_blocks=True)), model)
    with pytest.raises(TypeError, match='False, True or a dict'):
        apply_compile_blocks(Config(dict(compile_blocks='yes')), model)
    cmae = _build(registry, repo_root, TINY_CMAE)
    names = apply_compile_blocks(
        Config(dict(compile_blocks=dict(backend='eager'))), cmae)
    assert len(names) == 11


@pytest.fixture(scope='module')
def steps(registry, repo_root):
    """One loss + backward of the tiny CMAE in float32 eager, float32 with compiled
    blocks (Inductor, ``dynamic=False``) and float64 eager (the reference), from the
    same weights and mask seeds on the same batch: ``{name: (losses, grads,
    model)}``; also the state-dict keys before compiling."""
    eager = _build(registry, repo_root, TINY_CMAE)
    compiled, exact = copy.deepcopy(eager), copy.deepcopy(eager).double()
    keys = list(compiled.state_dict())
    compile_blocks(compiled, dynamic=False)
    gen = torch.Generator().manual_seed(1)
    views = [torch.randn(4, 3, 224, 224, generator=gen) for _ in range(2)]
    out = dict(keys=keys)
    for name, model in (('eager', eager), ('compiled', compiled), ('exact', exact)):
        dtype = next(model.parameters()).dtype
        losses = model.loss([v.to(dtype) for v in views], None)
        sum(losses.values()).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        out[name] = (losses, grads, model)
    return out


def test_state_dict_names_unchanged(steps):
    compiled = steps['compiled'][2]
    assert list(compiled.state_dict()) == steps['keys']
    assert not any('_orig_mod' in k for k in steps['keys'])
    # the same masks: both drew once from the same seed
    assert compiled.mask_draws == steps['eager'][2].mask_draws == 1


def test_loss_and_gradients_equal_eager_within_float32_rounding(steps):
    """Inductor fuses and reorders the blocks' reductions (LayerNorm, softmax, the
    matrix products' accumulation), so the compiled step rounds differently, not
    less exactly. The bound: against the float64 step, the compiled step's gradient
    error is at most 3x the eager float32 step's own error over all gradients
    together (measured: 1.3x), and at most 4x per parameter tensor (max abs error;
    measured: up to 2.8x, single tensors spread more), plus an absolute floor of
    1e-5 x the largest gradient for the tensors whose gradient is zero up to
    rounding (biases before the projector's BatchNorm, which cancels them).
    Compiled and eager losses differ by at most 2e-5 relative (measured: 4e-6 for
    loss_ct, whose 1/0.07 temperature amplifies rounding; eager float32 itself is
    2.4e-6 from float64). A wrong compiled block gives errors of order 1."""
    (loss_e, grad_e, _), (loss_c, grad_c, _), (loss_x, grad_x,
                                               _) = (steps['eager'], steps['compiled'],
                                                     steps['exact'])
    for k in loss_e:
        assert loss_c[k].item() == pytest.approx(loss_e[k].item(), rel=2e-5)
        assert loss_e[k].item() == pytest.approx(loss_x[k].item(), rel=2e-5)
    assert grad_c.keys() == grad_e.keys() == grad_x.keys()
    assert len(grad_c) > 100  # every trained tensor of the model

    def flat(grads):
        return torch.cat([grads[k].double().flatten() for k in grad_x])

    err_e = (flat(grad_e) - flat(grad_x)).norm()
    err_c = (flat(grad_c) - flat(grad_x)).norm()
    assert err_e > 0  # float32 is not float64: the bound is not vacuous
    assert err_c <= 3 * err_e, (err_c, err_e)
    floor = 1e-5 * max(g.abs().max() for g in grad_x.values())
    for k, exact in grad_x.items():
        e = (grad_e[k].double() - exact).abs().max()
        c = (grad_c[k].double() - exact).abs().max()
        assert c <= 4 * e + floor, (k, c, e, floor)


@pytest.mark.e2e
def test_train_with_compile_blocks(run_tool, photo_folder, cmae_pretrain_ckpt,
                                   tmp_path):
    """tools/train.py --compile-blocks: 2 iterations of the tiny CMAE train and save
    a checkpoint with the eager run's keys and shapes (cmae_pretrain_ckpt: the same
    command without the flag)."""
    work = str(tmp_path / 'compiled')
    proc, _ = run_tool([
        'tools/train.py', TINY_CMAE, '--compile-blocks', '--work-dir', work,
        '--cfg-options', f'train_dataloader.dataset.data_root={photo_folder}',
        'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False'
    ])
    assert 'compile_blocks: 11 blocks compiled in place (backbone: 4, neck: 2, ' \
        'feature_decoder: 1, target_encoder: 4)' in proc.stdout + proc.stderr
    compiled = torch.load(osp.join(work, 'iter_2.pth'))['state_dict']
    eager = torch.load(cmae_pretrain_ckpt)['state_dict']
    assert list(compiled) == list(eager)
    assert all(compiled[k].shape == eager[k].shape for k in eager)
    assert all(
        torch.isfinite(v).all() for v in compiled.values() if v.is_floating_point())
