"""float16 with dynamic loss scaling, on this CPU through the GPUs' code path
(MixedPrecisionOptimWrapper(dtype='float16'): autocast + GradScaler): overflow ->
skipped step -> lower scale, the scaler state across a resume (tools/train.py
--precision fp16), the target update on skipped steps; bfloat16 only where native;
the float32 islands leave float64 alone (one float64 step of CMAE and ConMIM)."""
import copy
import json
import os
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub, MMLogger
from mmengine.optim import build_optim_wrapper
from torch import nn

import cmae_mm  # noqa: F401  (registration)
from cmae_mm.engine.hooks import NonFiniteGuardHook, TargetUpdateHook
from cmae_mm.engine.optimizers import MixedPrecisionOptimWrapper
from cmae_mm.engine.optimizers.mixed_precision_optim_wrapper import native_bf16
from cmae_mm.models.utils import MomentumTarget, upcast_half

CMAE_DEMO = 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py'
CONMIM_DEMO = 'configs/pretrain/conmim_vit-tiny-p16_1xb8-20e_demo.py'


class TinyMomentumModel(nn.Module):
    """Online Linear-BN-ReLU-Linear and its momentum target (as CMAE / ConMIM)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.online = nn.Sequential(
            nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
        self.target = MomentumTarget(self.online, momentum=0.1)
        self.target.copy_from(self.online)

    def forward(self, x):
        return self.online(x)

    def update_target(self, cur_iter: int = 0, max_iters: int = 1) -> None:
        self.target.update_parameters(self.online, cur_iter, max_iters)


def _fp16_wrapper(model, **kwargs):
    cfg = dict(
        type='MixedPrecisionOptimWrapper',
        dtype='float16',
        optimizer=dict(type='AdamW', lr=1e-2))
    cfg.update(kwargs)
    return build_optim_wrapper(model, cfg)


def _loss(wrapper, model, factor=1., seed=0):
    """Forward under the wrapper's autocast; ``factor`` scales the loss (1e4: a
    finite loss whose scaled gradients overflow float16, max 65504)."""
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(seed))
    with wrapper.optim_context(model):
        out = model(x)
    return out.float().pow(2).mean() * factor, out


def _snapshot(model, wrapper):
    params = [p.detach().clone() for p in model.online.parameters()]
    state = copy.deepcopy(wrapper.optimizer.state_dict()['state'])
    return params, state


def _unchanged(model, wrapper, snapshot):
    params, state = snapshot
    now = wrapper.optimizer.state_dict()['state']
    return (all(torch.equal(p, q) for p, q in zip(model.online.parameters(), params))
            and set(now) == set(state) and all(
                torch.equal(torch.as_tensor(now[i][k]), torch.as_tensor(state[i][k]))
                for i in state for k in state[i]))


# -- the wrapper on a CPU ------------------------------------------------------------
def test_cpu_float16_is_autocast_with_a_cpu_grad_scaler():
    choose = MixedPrecisionOptimWrapper.choose_precision
    assert choose('float16', 'cpu')[:2] == (torch.float16, True)
    assert choose('auto', 'cpu')[:2] == (torch.bfloat16, False)  # unchanged
    with pytest.raises(ValueError, match=r"no float16 .* on mps.*'float32'"):
        choose('float16', 'mps')

    model = TinyMomentumModel()
    wrapper = _fp16_wrapper(model)
    assert wrapper.cast_dtype == torch.float16
    assert type(wrapper.loss_scaler) is torch.amp.GradScaler
    assert wrapper.loss_scaler._device == 'cpu'
    assert wrapper.loss_scaler.get_scale() == 2.**16  # 'dynamic': the defaults
    assert wrapper._scale_update_param is None
    assert 'float16 on cpu, loss scaler: GradScaler' in repr(wrapper)
    loss, out = _loss(wrapper, model)
    assert out.dtype == torch.float16  # the forward ran under float16 autocast
    wrapper.update_params(loss)
    # parameters, optimizer state and BatchNorm statistics stay float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.online[1].running_mean.dtype == torch.float32
    assert all(s['exp_avg'].dtype == torch.float32
               for s in wrapper.optimizer.state.values())
    hub = MessageHub.get_current_instance()
    assert hub.get_scalar('train/loss_scale').current() == 2.**16

    # AmpOptimWrapper's loss_scale semantics: a float is static, a dict GradScaler's
    static = _fp16_wrapper(TinyMomentumModel(), loss_scale=128.)
    assert static.loss_scaler.get_scale() == 128. and static._scale_update_param == 128.
    custom = _fp16_wrapper(
        TinyMomentumModel(), loss_scale=dict(init_scale=4., growth_interval=1))
    assert custom.loss_scaler.get_scale() == 4.
    with pytest.raises(TypeError, match="loss_scale must be 'dynamic'"):
        _fp16_wrapper(TinyMomentumModel(), loss_scale='static')


@pytest.mark.parametrize('clip', [None, dict(max_norm=1.0)])
def test_overflow_skips_the_step_and_halves_the_scale(clip):
    """A finite loss whose scaled gradients overflow float16: no parameter or AdamW
    state changes, the scale is multiplied by backoff_factor (0.5); the next finite
    step is taken at the lowered scale (with clipping: unscale_ first)."""
    model = TinyMomentumModel()
    wrapper = _fp16_wrapper(model, clip_grad=clip)
    wrapper.update_params(_loss(wrapper, model, seed=0)[0])  # a good step first
    assert wrapper.loss_scaler.get_scale() == 2.**16
    before = _snapshot(model, wrapper)

    loss, _ = _loss(wrapper, model, factor=1e4, seed=1)
    assert torch.isfinite(loss)  # the loss is fine, its float16 gradients are not
    wrapper.update_params(loss)
    assert _unchanged(model, wrapper, before)
    assert wrapper.loss_scaler.get_scale() == 2.**15
    assert wrapper.loss_scaler.get_backoff_factor() == 0.5
    assert MessageHub.get_current_instance().get_scalar(
        'train/loss_scale').current() == 2.**15
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())

    wrapper.update_params(_loss(wrapper, model, seed=2)[0])
    assert not _unchanged(model, wrapper, before)
    assert wrapper.loss_scaler.get_scale() == 2.**15
    steps = {int(s['step']) for s in wrapper.optimizer.state.values()}
    assert steps == {2}  # two steps taken out of three


def test_static_scale_skips_but_keeps_the_scale():
    model = TinyMomentumModel()
    wrapper = _fp16_wrapper(model, loss_scale=2.**16)
    before = _snapshot(model, wrapper)
    wrapper.update_params(_loss(wrapper, model, factor=1e4)[0])
    assert _unchanged(model, wrapper, before)
    assert wrapper.loss_scaler.get_scale() == 2.**16


def test_scaler_skip_updates_the_target_guard_skip_does_not():
    """The releases run the EMA after every loss_scaler call, a skipped step too
    (ConMIM engine_for_pretraining.py; CMAE's MomentumUpdateHook): so does
    TargetUpdateHook. A non-finite loss (NonFiniteGuardHook) skips both."""
    model = TinyMomentumModel()
    wrapper = _fp16_wrapper(model)
    hub = MessageHub.get_instance('fp16_scaling_hooks')
    runner = SimpleNamespace(
        model=model,
        optim_wrapper=wrapper,
        message_hub=hub,
        iter=0,
        epoch=0,
        max_iters=10,
        logger=MMLogger.get_current_instance())
    guard, target_hook = NonFiniteGuardHook(action='skip'), TargetUpdateHook()
    guard.before_train(runner)
    target_hook.before_train(runner)

    def iteration(factor):
        loss, _ = _loss(wrapper, model, factor=factor, seed=runner.iter)
        wrapper.update_params(loss)
        for hook in (guard, target_hook):  # priority order VERY_HIGH, ABOVE_NORMAL
            hook.after_train_iter(runner, runner.iter, outputs=dict(loss=loss.detach()))
        runner.iter += 1

    target = model.target.module[0].weight
    iteration(1.)
    assert int(model.target.steps) == 1
    online, tgt = model.online[0].weight.detach().clone(), target.detach().clone()

    iteration(1e4)  # the scaler skips the step; the target moves towards online
    assert torch.equal(model.online[0].weight, online)
    assert wrapper.loss_scaler.get_scale() == 2.**15
    assert hub.get_info('optimizer_step_skipped') is False
    assert int(model.target.steps) == 2
    torch.testing.assert_close(target, 0.9 * tgt + 0.1 * online)

    tgt = target.detach().clone()
    iteration(float('inf'))  # the guard skips the step and the target update
    assert hub.get_info('optimizer_step_skipped') is True
    assert int(model.target.steps) == 2 and torch.equal(target, tgt)
    assert torch.equal(model.online[0].weight, online)
    assert wrapper.loss_scaler.get_scale() == 2.**15  # the scaler never saw it

    iteration(1.)
    assert int(model.target.steps) == 3
    assert not torch.equal(model.online[0].weight, online)


# -- bfloat16 on GPUs: native only ---------------------------------------------------
class FakeCuda:
    """``torch.cuda``'s ``is_bf16_supported`` for a GPU that is not here: sm_70 /
    sm_75 (V100, T4) emulate bfloat16, sm_80+ compute it."""

    def __init__(self, capability):
        self.capability = capability

    def is_bf16_supported(self, including_emulation=True):
        return self.capability >= (8, 0) or including_emulation


def test_bf16_on_a_gpu_needs_native_support():
    v100, a100 = FakeCuda((7, 0)), FakeCuda((8, 0))
    assert v100.is_bf16_supported()  # what torch's default would answer
    assert not native_bf16('cuda', v100) and native_bf16('cuda', a100)
    assert native_bf16('cpu', v100)
    choose = MixedPrecisionOptimWrapper.choose_precision
    assert choose('bfloat16', 'cuda', a100)[:2] == (torch.bfloat16, False)
    with pytest.raises(ValueError, match=r'no native bfloat16.*V100.*--precision'):
        choose('bfloat16', 'cuda', v100)
    assert choose('auto', 'cuda', v100)[:2] == (torch.float16, True)
    # this machine: the real torch.cuda answers (no GPU: no bfloat16 on cuda)
    assert native_bf16('cuda') == torch.cuda.is_bf16_supported(
        including_emulation=False)


# -- float32 islands: half -> float32, float32 / float64 kept -------------------------
def test_upcast_half():
    for dtype in (torch.float16, torch.bfloat16):
        assert upcast_half(torch.ones(2, dtype=dtype)).dtype == torch.float32
    for dtype in (torch.float32, torch.float64, torch.int64):
        x = torch.ones(2, dtype=dtype)
        assert upcast_half(x) is x


def test_contrastive_loss_float32_under_float16_autocast():
    from cmae_mm.models.losses import DenoisingContrastiveLoss
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 16, 32, generator=gen), torch.randn(2, 16, 32)
    mask = torch.rand(2, 16, generator=gen) > 0.5
    loss = DenoisingContrastiveLoss()
    with torch.autocast('cpu', dtype=torch.float16):
        mixed = loss(pred.half(), target.half(), mask)
    assert mixed.dtype == torch.float32
    assert torch.equal(mixed, loss(pred.half().float(), target.half().float(), mask))
    double = loss(pred.double(), target.double(), mask)
    assert double.dtype == torch.float64
    assert double.item() == pytest.approx(loss(pred, target, mask).item(), rel=1e-5)


def _demo_model(registry, repo_root, path):
    from mmengine.model import revert_sync_batchnorm
    cfg = Config.fromfile(osp.join(repo_root, path))
    torch.manual_seed(0)
    model = revert_sync_batchnorm(registry.build(cfg.model))
    model.init_weights()
    MessageHub.get_instance(f'float64_{id(model)}')  # not in a Runner's loop
    return model.double().train()


def _float64_step(model, loss_fn):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    before_target = {
        k: v.clone()
        for k, v in model.state_dict().items() if k.startswith('target_encoder.')
    }
    losses = loss_fn()
    total = sum(losses.values())
    assert {v.dtype for v in losses.values()} == {torch.float64}
    assert torch.isfinite(total)
    total.backward()
    optimizer.step()
    model.update_target(0, 10)
    params = dict(model.named_parameters())
    assert all(p.dtype == torch.float64 for p in params.values())
    moved = [k for k in before if not torch.equal(before[k], params[k])]
    assert any(k.startswith('backbone.') for k in moved)
    # the target's EMA (after the step) ran in float64 too
    target = {
        k: v
        for k, v in model.state_dict().items()
        if k.startswith('target_encoder.module.') and v.is_floating_point()
    }
    assert {v.dtype for v in target.values()} == {torch.float64}
    assert any(not torch.equal(before_target[k], v) for k, v in target.items())


def test_float64_training_step_of_cmae(registry, repo_root):
    """``.float()`` in CMAE.loss used to stop this with ``mat1 and mat2 must have
    the same dtype, but got Float and Double``."""
    model = _demo_model(registry, repo_root, CMAE_DEMO)
    gen = torch.Generator().manual_seed(0)
    views = [torch.randn(2, 3, 224, 224, generator=gen, dtype=torch.float64)] * 2
    _float64_step(model, lambda: model.loss(views, []))


def test_float64_training_step_of_conmim(registry, repo_root):
    from mmpretrain.structures import DataSample
    model = _demo_model(registry, repo_root, CONMIM_DEMO)
    gen = torch.Generator().manual_seed(0)
    views = [torch.randn(2, 3, 224, 224, generator=gen, dtype=torch.float64)] * 2
    samples = [
        DataSample().set_mask((torch.rand(14, 14, generator=gen) < 0.75).long())
        for _ in range(2)
    ]
    _float64_step(model, lambda: model.loss(views, samples))


# -- tools/train.py --precision fp16: a run, its checkpoint, its resume ----------------
FP16_OPTS = [
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'train_dataloader.batch_size=2',  # float16 matmuls are slow on CPUs
    'train_cfg.max_iters=4',
    'default_hooks.logger.interval=1',
    'log_processor.window_size=1',
    'default_hooks.checkpoint.interval=2',
    'default_hooks.checkpoint.max_keep_ckpts=2',
    # the scale doubles after every 2 finite steps: a resume that dropped the
    # scaler state would continue from init_scale
    'optim_wrapper.loss_scale.init_scale=256.0',
    'optim_wrapper.loss_scale.growth_interval=2'
]


def _train_fp16(run_tool, work, photo_folder, resume=None):
    cmd = ['tools/train.py', CMAE_DEMO, '--work-dir', str(work), '--precision', 'fp16']
    cmd += ['--resume', resume] if resume else []
    cmd += [
        '--cfg-options', f'train_dataloader.dataset.data_root={photo_folder}',
        *FP16_OPTS
    ]
    proc, _ = run_tool(cmd)
    return proc.stdout + proc.stderr


def _logged(work):
    files = sorted(
        osp.join(dp, f) for dp, _, fs in os.walk(work) for f in fs
        if f == 'scalars.json')
    with open(files[-1]) as f:
        return {r['iter']: r for r in map(json.loads, f) if 'loss' in r}


@pytest.mark.e2e
def test_fp16_trains_and_resumes_with_the_saved_scale(tmp_path, photo_folder, run_tool):
    full, resumed = tmp_path / 'full', tmp_path / 'resumed'
    out = _train_fp16(run_tool, full, photo_folder)
    assert 'float16 autocast with loss scaling (loss_scale=' in out
    assert 'slow on a CPU, same code path as on GPUs' in out
    logs = _logged(full)
    assert sorted(logs) == [1, 2, 3, 4]
    assert all(0 < r['loss'] < 1e3 for r in logs.values())
    # no overflow in this short run: 256 -> 512 after 2 steps -> 1024 after 4
    assert [logs[i]['loss_scale'] for i in (1, 2, 3, 4)] == [256., 512., 512., 1024.]

    # MMEngine saves the scaler under the optimizer state: optimizer['loss_scaler']
    ckpt2 = torch.load(full / 'iter_2.pth', map_location='cpu', weights_only=False)
    ckpt4 = torch.load(full / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert ckpt2['optimizer']['loss_scaler'] == dict(
        scale=512.,
        growth_factor=2.,
        backoff_factor=0.5,
        growth_interval=2,
        _growth_tracker=0)
    assert ckpt4['optimizer']['loss_scaler']['scale'] == 1024.

    # resumed after iteration 2: continues from the saved 512 (fresh would be 256)
    out = _train_fp16(run_tool, resumed, photo_folder, resume=str(full / 'iter_2.pth'))
    assert 'resumed epoch: 0, iter: 2' in out
    again = _logged(resumed)
    assert sorted(again) == [3, 4]
    assert [again[i]['loss_scale'] for i in (3, 4)] == [512., 1024.]
    ckpt4r = torch.load(resumed / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert ckpt4r['optimizer']['loss_scaler'] == ckpt4['optimizer']['loss_scaler']
    # float16 on a CPU is deterministic: the resumed run is the uninterrupted one
    for i in (3, 4):
        assert again[i]['loss'] == logs[i]['loss'], i
    for k, v in ckpt4['state_dict'].items():
        assert torch.equal(v, ckpt4r['state_dict'][k]), k


def test_guard_reads_its_flag_after_the_backward_pass_and_handles_accumulation():
    """The guard's host read comes after the backward pass was launched (a gradient
    hook sees the flag still unread), and a non-finite loss in an accumulation step
    (no optimizer step) drops the accumulated gradients; the next update steps."""
    model = TinyMomentumModel()
    wrapper = build_optim_wrapper(
        model, dict(optimizer=dict(type='SGD', lr=0.1), accumulative_counts=2))
    wrapper.initialize_count_status(model, 0, 4)
    hub = MessageHub.get_instance('guard_after_backward')
    runner = SimpleNamespace(optim_wrapper=wrapper, message_hub=hub)
    guard = NonFiniteGuardHook(action='skip')
    guard.before_train(runner)
    seen = []
    model.online[0].weight.register_hook(
        lambda g: seen.append(guard._finite is not None))

    def loss_of(factor):
        x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
        return model(x).pow(2).mean() * factor

    before = model.online[0].weight.detach().clone()
    wrapper.update_params(loss_of(float('nan')))  # accumulation step, non-finite
    assert seen == [True]  # backward ran before the flag was read
    assert hub.get_info('optimizer_step_skipped') is True
    assert model.online[0].weight.grad is None or not model.online[0].weight.grad.any()
    wrapper.update_params(loss_of(1.))  # the update step: finite, steps
    assert hub.get_info('optimizer_step_skipped') is False
    assert torch.isfinite(model.online[0].weight).all()
    assert not torch.equal(model.online[0].weight, before)
