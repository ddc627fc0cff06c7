"""MixedPrecisionOptimWrapper: the precision chosen by device, the Runner's API,
checkpoints across precisions, tools/train.py --amp / --precision, and the tiny demo
trained in float32 and in bfloat16 (losses track)."""
import copy
import glob
import json
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from torch import nn

import cmae_mm  # noqa: F401  (registration)
from cmae_mm.engine.optimizers import MixedPrecisionOptimWrapper

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CMAE_B = osp.join(REPO, 'configs/pretrain/cmae_vit-b.py')
CONMIM_B = osp.join(
    REPO, 'configs/pretrain/conmim_vit-base-p16_8xb256-amp-coslr-300e_in1k.py')
CMAE_DEMO = 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py'
CONMIM_DEMO = 'configs/pretrain/conmim_vit-tiny-p16_1xb8-20e_demo.py'


def _tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def _wrapper(model, **kwargs):
    from mmengine.optim import build_optim_wrapper
    cfg = dict(type='MixedPrecisionOptimWrapper', optimizer=dict(type='AdamW', lr=1e-2))
    cfg.update(kwargs)
    return build_optim_wrapper(model, cfg)


def _train_steps(wrapper, model, steps=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 6, generator=gen)
        with wrapper.optim_context(model):
            out = model(x)
            loss = out.float().pow(2).mean()
        wrapper.update_params(loss)
    return out


# -- the choice -------------------------------------------------------------------
def test_choice_by_device_and_overrides():
    choose = MixedPrecisionOptimWrapper.choose_precision
    assert choose('auto', 'cpu')[:2] == (torch.bfloat16, False)
    assert choose('auto', 'cuda')[:2] == (torch.float16, True)  # the releases'
    assert choose('auto', 'mps')[:2] == (None, False)
    assert choose('float16', 'cuda')[:2] == (torch.float16, True)
    assert choose('float32', 'cuda')[:2] == (None, False)
    assert choose('float32', 'cpu')[:2] == (None, False)
    assert choose('bfloat16', 'cpu')[:2] == (torch.bfloat16, False)
    assert choose(torch.bfloat16, 'cpu')[:2] == (torch.bfloat16, False)
    # float16 on a CPU: the GPUs' autocast + GradScaler path (test_fp16_scaling.py)
    assert choose('float16', 'cpu')[:2] == (torch.float16, True)
    with pytest.raises(ValueError, match='must be one of'):
        choose('fp16', 'cpu')


def test_cpu_wrappers_autocast_and_keep_float32_state():
    model = _tiny_model()
    auto = _wrapper(model)
    assert auto.cast_dtype == torch.bfloat16 and auto.loss_scaler is None
    out = _train_steps(auto, model)
    assert out.dtype == torch.bfloat16  # the forward ran under bf16 autocast
    # parameters, gradients, optimizer state and BatchNorm statistics stay float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model[1].running_mean.dtype == model[1].running_var.dtype == torch.float32
    for state in auto.optimizer.state.values():
        assert state['exp_avg'].dtype == torch.float32
    assert 'bfloat16' in repr(auto)

    fp32 = _wrapper(model, dtype='float32')
    assert fp32.cast_dtype is None and fp32.loss_scaler is None
    assert _train_steps(fp32, model).dtype == torch.float32
    fp16 = _wrapper(model, dtype='float16')
    assert fp16.cast_dtype == torch.float16 and fp16.loss_scaler is not None


def test_float32_is_plain_optim_wrapper():
    from mmengine.optim import build_optim_wrapper
    a, b = _tiny_model(), _tiny_model()
    opt = dict(optimizer=dict(type='AdamW', lr=1e-2), clip_grad=dict(max_norm=0.1))
    wa = build_optim_wrapper(a, dict(type='OptimWrapper', **copy.deepcopy(opt)))
    wb = _wrapper(b, dtype='float32', **copy.deepcopy(opt))
    _train_steps(wa, a)
    _train_steps(wb, b)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_accumulation_and_clipping_under_bf16():
    from mmengine.logging import MessageHub
    model = _tiny_model()
    wrapper = _wrapper(model, accumulative_counts=2, clip_grad=dict(max_norm=1e-3))
    before = [p.detach().clone() for p in model.parameters()]
    _train_steps(wrapper, model, steps=1)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert not wrapper.should_update() and model[0].weight.grad is not None
    _train_steps(wrapper, model, steps=1, seed=2)
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert model[0].weight.grad is None or not model[0].weight.grad.any()  # zeroed
    grad_norm = MessageHub.get_current_instance().get_scalar('train/grad_norm')
    assert grad_norm.current() > 1e-3  # logged before clipping to 1e-3


def test_state_dict_round_trip_across_precisions():
    """bf16 -> bf16, fp16 (with a loss scaler) -> bf16 and bf16 -> fp16 resumes."""
    model = _tiny_model()
    src = _wrapper(model)
    _train_steps(src, model)
    state = src.state_dict()
    assert 'loss_scaler' not in state  # nothing to save without a scaler

    dst = _wrapper(_tiny_model())
    dst.load_state_dict(copy.deepcopy(state))
    for i, s in src.optimizer.state_dict()['state'].items():
        assert torch.equal(dst.optimizer.state_dict()['state'][i]['exp_avg'],
                           s['exp_avg'])

    # a float16 run's checkpoint (GPU): the GradScaler state rides along
    scaler = torch.amp.GradScaler('cpu', init_scale=1024.)
    fp16_state = dict(copy.deepcopy(state), loss_scaler=scaler.state_dict())
    dst.load_state_dict(fp16_state)  # dropped, no error
    assert dst.loss_scaler is None

    # and a float16 wrapper (AmpOptimWrapper's path, with a CPU GradScaler) trains,
    # saves the scaler and resumes from a checkpoint without one
    fp16_model = _tiny_model()
    fp16 = _wrapper(
        fp16_model,
        dtype='float16',
        loss_scale=dict(init_scale=512.),
        clip_grad=dict(max_norm=1.0))
    before = fp16_model[0].weight.detach().clone()
    _train_steps(fp16, fp16_model)
    assert not torch.equal(before, fp16_model[0].weight)
    assert fp16.state_dict()['loss_scaler']['scale'] == 512.
    fp16.load_state_dict(copy.deepcopy(state))  # no 'loss_scaler': keeps its own
    assert fp16.loss_scaler.get_scale() == 512.
    fp16.load_state_dict(dict(copy.deepcopy(state), loss_scaler=scaler.state_dict()))
    assert fp16.loss_scaler.get_scale() == 1024.


@pytest.mark.parametrize('path', [CMAE_B, CONMIM_B])
def test_release_configs_build_on_cpu_in_bf16(path):
    """The full ViT-B configs' optim_wrapper (constructor and paramwise_cfg
    included) through the Runner's builder, on CPU: bfloat16, no scaler."""
    from mmengine.runner import Runner
    cfg = Config.fromfile(path)
    assert cfg.optim_wrapper.type == 'MixedPrecisionOptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper  # so type=OptimWrapper also works
    wrapper = Runner.build_optim_wrapper(
        SimpleNamespace(model=_tiny_model()), copy.deepcopy(cfg.optim_wrapper))
    assert isinstance(wrapper, MixedPrecisionOptimWrapper)
    assert wrapper.cast_dtype == torch.bfloat16 and wrapper.loss_scaler is None


# -- tools/train.py ---------------------------------------------------------------
def test_train_precision_flags():
    """tools/train.py --amp / --precision and the benchmark tool's --precision."""
    from mmengine.runner import Runner

    from cmae_mm.engine.optimizers import set_precision
    for name, dtype in (('auto', 'auto'), ('bf16', 'bfloat16'), ('fp16', 'float16')):
        cfg = Config.fromfile(CMAE_B)
        set_precision(cfg, name, '--precision')
        assert cfg.optim_wrapper.type == 'MixedPrecisionOptimWrapper'
        assert cfg.optim_wrapper.dtype == dtype
    # fp32 = plain OptimWrapper, whatever AMP keys the config had
    cfg = Config.fromfile(CMAE_B)
    cfg.optim_wrapper.update(type='AmpOptimWrapper', loss_scale='dynamic', dtype=None)
    set_precision(cfg, 'fp32', '--precision')
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert not {'loss_scale', 'dtype'} & set(cfg.optim_wrapper)
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys  # kept
    wrapper = Runner.build_optim_wrapper(
        SimpleNamespace(model=_tiny_model()), cfg.optim_wrapper)
    assert type(wrapper).__name__ == 'OptimWrapper'
    # --amp: OptimWrapper / AmpOptimWrapper -> the new wrapper, dtype 'auto'
    for wrapper_type in ('OptimWrapper', 'AmpOptimWrapper'):
        cfg = Config.fromfile(osp.join(REPO, CONMIM_DEMO))
        cfg.optim_wrapper.type = wrapper_type
        set_precision(cfg, 'amp', '--amp')
        assert cfg.optim_wrapper.type == 'MixedPrecisionOptimWrapper'
        assert cfg.optim_wrapper.dtype == 'auto'
        assert cfg.optim_wrapper.clip_grad == dict(max_norm=1.0)
    cfg.optim_wrapper.type = 'ApexOptimWrapper'
    with pytest.raises(ValueError, match='ApexOptimWrapper'):
        set_precision(cfg, 'bf16', '--precision bf16')


# -- the tiny configs: float32 vs bfloat16 ------------------------------------------
def test_contrastive_losses_run_in_float32_under_autocast(registry):
    """CPU autocast would compute the logits' matmul in bfloat16: the contrastive
    head of CMAE and ConMIM's loss run with autocast off."""
    from cmae_mm.models.losses import DenoisingContrastiveLoss
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 16, 32, generator=gen), torch.randn(2, 16, 32)
    mask = torch.rand(2, 16, generator=gen) > 0.5
    loss = DenoisingContrastiveLoss()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        mixed = loss(pred, target, mask)
    assert mixed.dtype == torch.float32
    assert torch.equal(mixed, loss(pred, target, mask))

    cfg = Config.fromfile(osp.join(REPO, CMAE_DEMO))
    model = registry.build(cfg.model)
    model.init_weights()
    seen = {}
    model.contrastive_head.predictor.register_forward_hook(
        lambda m, args, out: seen.update(inp=args[0][0].dtype, out=out[0].dtype))
    views = [torch.randn(2, 3, 224, 224), torch.randn(2, 3, 224, 224)]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model.loss(views, [])
    assert seen == dict(inp=torch.float32, out=torch.float32)
    assert losses['loss_ct'].dtype == losses['loss_rc'].dtype == torch.float32


TRAIN_ITERS = 30


def _scalars(work_dir):
    path = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))[-1]
    with open(path) as f:
        return [json.loads(line) for line in f if '"loss"' in line]


@pytest.fixture(scope='module')
def cmae_runs(tmp_path_factory, photo_folder, run_tool):
    """The tiny CMAE demo, 30 iterations from the same seed, in float32 and in
    bfloat16 (tools/train.py --precision)."""
    runs = {}
    for precision in ('fp32', 'bf16'):
        work = str(tmp_path_factory.mktemp(f'cmae_{precision}'))
        proc, _ = run_tool([
            'tools/train.py', CMAE_DEMO, '--work-dir', work, '--precision', precision,
            '--cfg-options', f'train_dataloader.dataset.data_root={photo_folder}',
            f'train_cfg.max_iters={TRAIN_ITERS}', 'default_hooks.logger.interval=1',
            'log_processor.window_size=1',
            f'default_hooks.checkpoint.interval={TRAIN_ITERS}',
            'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False'
        ])
        runs[precision] = (work, _scalars(work), proc.stdout + proc.stderr)
    return runs


@pytest.mark.e2e
def test_bf16_losses_track_fp32(cmae_runs):
    """Tolerances. bfloat16 keeps 8 mantissa bits (rounding 2^-9 ~ 0.2 % per op),
    the losses average thousands of elements and CMAE's contrastive loss is float32:
    at iteration 1 (same weights, only the forward's rounding differs) the loss agrees
    within 1 % (measured 0.1 %). Then the two trajectories drift apart (different
    rounding -> different updates); batch-8 InfoNCE is noisy, so single iterations
    are bounded loosely (total within 15 %, measured <= 8.3 %; the smooth MSE within
    5 %, measured <= 1.7 %) and the mean of the last 10 within 5 % (measured 0.9 %).
    """
    fp32, bf16 = cmae_runs['fp32'][1], cmae_runs['bf16'][1]
    assert [r['iter']
            for r in fp32] == [r['iter']
                               for r in bf16] == list(range(1, TRAIN_ITERS + 1))
    assert 'float32 (no autocast' not in cmae_runs['bf16'][2]
    assert 'bfloat16 autocast, no loss scaler' in cmae_runs['bf16'][2]
    a = [r['loss'] for r in fp32]
    b = [r['loss'] for r in bf16]
    assert all(v == v and abs(v) < 1e3 for v in b)  # finite
    rel = [abs(x - y) / abs(x) for x, y in zip(a, b)]
    rel_rc = [
        abs(p['loss_rc'] - q['loss_rc']) / p['loss_rc'] for p, q in zip(fp32, bf16)
    ]
    mean_a, mean_b = sum(a[-10:]) / 10, sum(b[-10:]) / 10
    print(
        f'fp32 vs bf16: iter-1 {rel[0]:.4f}, max per-iter {max(rel):.4f}, max loss_rc '
        f'{max(rel_rc):.4f}, last-10 means {mean_a:.4f} vs {mean_b:.4f}')
    assert rel[0] < 0.01
    assert max(rel) < 0.15
    assert max(rel_rc) < 0.05
    assert abs(mean_a - mean_b) / mean_a < 0.05
    # bf16 learns: the loss falls as in float32
    assert sum(b[-5:]) / 5 < 0.8 * sum(b[:5]) / 5


@pytest.mark.e2e
def test_bf16_checkpoint_is_float32_without_scaler(cmae_runs):
    """The momentum target (EMA after the step, outside autocast), the BatchNorm
    statistics and the optimizer state are saved in float32; no scaler state."""
    work = cmae_runs['bf16'][0]
    ckpt = torch.load(
        osp.join(work, f'iter_{TRAIN_ITERS}.pth'),
        map_location='cpu',
        weights_only=False)
    floats = {
        k: v.dtype
        for k, v in ckpt['state_dict'].items() if v.is_floating_point()
    }
    assert set(floats.values()) == {torch.float32}
    assert 'target_encoder.module.1.bn0.running_mean' in floats
    assert int(ckpt['state_dict']['target_encoder.steps']) == TRAIN_ITERS
    assert 'loss_scaler' not in ckpt['optimizer']


@pytest.mark.e2e
def test_tiny_conmim_trains_in_bf16(tmp_path, photo_folder, run_tool):
    work = str(tmp_path / 'conmim_bf16')
    proc, _ = run_tool([
        'tools/train.py', CONMIM_DEMO, '--work-dir', work, '--precision', 'bf16',
        '--cfg-options', f'train_dataloader.dataset.data_root={photo_folder}',
        'train_cfg.max_epochs=3', 'param_scheduler.1.end=3',
        'default_hooks.checkpoint.interval=3'
    ])
    assert 'bfloat16 autocast' in proc.stdout + proc.stderr
    losses = [r['loss'] for r in _scalars(work)]
    assert len(losses) == 6  # 9 photos, batch 8: 2 iterations per epoch
    assert all(v == v and abs(v) < 1e3 for v in losses)


# -- attention under CPU bfloat16 autocast -------------------------------------------
def _qkv(shape=(2, 3, 17, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g, requires_grad=True) for _ in range(3)]


def test_attention_is_sdpa_itself_outside_cpu_bfloat16():
    import torch.nn.functional as F

    from cmae_mm.models.utils import scaled_dot_product_attention
    q, k, v = _qkv()
    bias = torch.randn(1, 3, 17, 17)
    ours = scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.3)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.3)
    assert torch.equal(ours, ref)
    # a bias that needs a gradient: PyTorch's math kernel, kept in bfloat16
    table = torch.randn(1, 3, 17, 17, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        qb, kb, vb = (t.to(torch.bfloat16) for t in (q, k, v))
        ours = scaled_dot_product_attention(qb, kb, vb, attn_mask=table.to(qb.dtype))
        ref = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=table.to(qb.dtype))
    assert ours.dtype == torch.bfloat16 and torch.equal(ours, ref)


def test_attention_runs_in_float32_under_cpu_bfloat16_autocast():
    import torch.nn.functional as F

    from cmae_mm.models.utils import scaled_dot_product_attention
    q, k, v = _qkv()
    bias = torch.randn(1, 3, 17, 17)  # no gradient: the fused kernel
    with torch.autocast('cpu', dtype=torch.bfloat16):
        qb, kb, vb = (t.to(torch.bfloat16) for t in (q, k, v))
        out = scaled_dot_product_attention(qb, kb, vb, attn_mask=bias)
    assert out.dtype == torch.bfloat16
    # = float32 attention of the bfloat16 inputs, rounded once to bfloat16
    exact = F.scaled_dot_product_attention(
        qb.float(), kb.float(), vb.float(), attn_mask=bias).to(torch.bfloat16)
    assert torch.equal(out, exact)
    out.float().sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.float32


def test_cmae_routes_every_mmpretrain_attention():
    from mmengine.registry import init_default_scope
    from mmpretrain.models.utils import MultiheadAttention
    from mmpretrain.registry import MODELS

    from cmae_mm.models.utils import scaled_dot_product_attention
    init_default_scope('mmpretrain')
    model = MODELS.build(Config.fromfile(osp.join(REPO, CMAE_DEMO)).model)
    parts = dict(
        online=model.backbone,
        pixel_decoder=model.neck,
        feature_decoder=model.feature_decoder,
        target=model.target_encoder)
    for name, part in parts.items():
        attentions = [m for m in part.modules() if isinstance(m, MultiheadAttention)]
        assert attentions, name
        assert all(m.scaled_dot_product_attention is scaled_dot_product_attention
                   for m in attentions), name
