"""MomentumTargetSelfSupervisor is the template of a momentum-target algorithm: a toy
BYOL (Grill et al. 2020: online encoder + projector + predictor, cosine loss against
an EMA target of encoder + projector), written here as a subclass and a loss only,
trains in MMEngine's Runner with TargetUpdateHook, its target follows the EMA formula
computed independently below, and it refuses to train without the hook."""
import math

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModule
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from torch import nn
from torch.utils.data import Dataset

import cmae_mm  # noqa: F401  (registers TargetUpdateHook)
from cmae_mm.models.algorithms import CMAE, ConMIM
from cmae_mm.models.utils import MomentumTargetSelfSupervisor

MAX_ITERS = 6
BASE, END = 0.1, 0.01  # 1 - m at the start and the end (cosine in between)


class TinyEncoder(BaseModule):
    """(B, 3, 8, 8) -> ((B, 16), )."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 16)

    def forward(self, x: torch.Tensor):
        return (self.fc(x.flatten(1)), )


class ToyBYOL(MomentumTargetSelfSupervisor):
    """BYOL in a subclass and a loss: MMPretrain's NonLinearNeck projector and
    LatentPredictHead (predictor + CosineSimilarityLoss) on a tiny encoder."""

    target_modules = ('backbone', 'neck')

    def __init__(self, base_momentum: float, end_momentum: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.build_target(base_momentum, end_momentum)

    def loss(self, inputs, data_samples, **kwargs):
        online, target = inputs
        query = self.neck(self.backbone(online))[0]  # (B, 8)
        with torch.no_grad():
            key = self.target_encoder.module(target)[0]  # (B, 8)
        return dict(loss=self.head.loss(query, key))


def _toy(seed: int = 0) -> ToyBYOL:
    torch.manual_seed(seed)
    return ToyBYOL(
        base_momentum=BASE,
        end_momentum=END,
        backbone=dict(type=TinyEncoder),
        neck=dict(
            type='NonLinearNeck',
            in_channels=16,
            hid_channels=32,
            out_channels=8,
            with_avg_pool=False),
        head=dict(
            type='LatentPredictHead',
            loss=dict(type='CosineSimilarityLoss'),
            predictor=dict(
                type='NonLinearNeck',
                in_channels=8,
                hid_channels=32,
                out_channels=8,
                with_avg_pool=False)))


class TwoViews(Dataset):
    """Random [online, target] views (3, 8, 8) per sample."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        views = [torch.randn(3, 8, 8, generator=g) for _ in range(2)]
        return dict(inputs=views, data_samples=DataSample())


class Recorder(Hook):
    """After TargetUpdateHook (ABOVE_NORMAL): the online and target parameters."""

    priority = 'NORMAL'

    def __init__(self) -> None:
        self.online, self.target = [], []

    def _record(self, model) -> None:
        self.online.append({
            k: v.detach().clone()
            for k, v in model.online_target_modules().named_parameters()
        })
        self.target.append({
            k: v.detach().clone()
            for k, v in model.target_encoder.module.named_parameters()
        })

    def before_train(self, runner) -> None:
        self._record(runner.model)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._record(runner.model)


def _runner(model, tmp_path, name, hooks):
    return Runner(
        model=model,
        work_dir=str(tmp_path / name),
        experiment_name=f'momentum_target_{name}',
        train_dataloader=dict(
            dataset=TwoViews(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=4,
            num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=MAX_ITERS),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.5, momentum=0.9)),
        custom_hooks=hooks,
        default_hooks=dict(checkpoint=None),
        default_scope='mmpretrain',
        log_level='WARNING')


def test_cmae_and_conmim_use_the_base():
    assert issubclass(CMAE, MomentumTargetSelfSupervisor)
    assert issubclass(ConMIM, MomentumTargetSelfSupervisor)
    assert CMAE.target_modules == ('backbone', 'projector')
    assert ConMIM.target_modules == ('backbone', 'neck')


def test_a_toy_byol_trains_with_the_hook_and_its_target_is_the_ema(tmp_path):
    model = _toy()
    keys = set(model.state_dict())
    assert 'target_encoder.steps' in keys
    assert {k.split('.')[2]
            for k in keys if k.startswith('target_encoder.module.')} == {'0', '1'}
    recorder = Recorder()
    runner = _runner(model, tmp_path, 'with_hook',
                     [dict(type='TargetUpdateHook'), recorder])
    runner.train()
    assert model.target_update_hook_registered
    assert int(model.target_encoder.steps) == MAX_ITERS
    assert len(recorder.online) == MAX_ITERS + 1
    # init_weights made the target a copy of the online modules
    for k, v in recorder.online[0].items():
        assert torch.equal(recorder.target[0][k], v), k
    # theta_t <- m_k theta_t + (1 - m_k) theta_s after the step of iteration k,
    # m_k = m_end - (m_end - m_0) (cos(pi k / K) + 1) / 2
    m0, m_end = 1 - BASE, 1 - END
    expected = dict(recorder.online[0])
    for k in range(MAX_ITERS):
        m = m_end - (m_end - m0) * (math.cos(math.pi * k / MAX_ITERS) + 1) / 2
        online = recorder.online[k + 1]
        expected = {n: m * expected[n] + (1 - m) * online[n] for n in expected}
        for n, v in expected.items():
            torch.testing.assert_close(recorder.target[k + 1][n], v)
    # the online modules trained and the target lags behind them
    moved = [
        n for n in expected
        if not torch.equal(recorder.online[-1][n], recorder.online[0][n])
    ]
    assert len(moved) == len(expected)
    assert not torch.allclose(recorder.target[-1]['0.fc.weight'],
                              recorder.online[-1]['0.fc.weight'])


def test_the_toy_refuses_to_train_without_the_hook(tmp_path):
    model = _toy()
    runner = _runner(model, tmp_path, 'without_hook', [])
    try:
        with pytest.raises(RuntimeError, match=r"dict\(type='TargetUpdateHook'\)"):
            runner.train()
    finally:  # the interrupted loop leaves its stage behind
        runner.message_hub.pop_info('loop_stage', None)
    assert int(model.target_encoder.steps) == 0


def test_a_subclass_that_forgets_the_target_is_told_how_to_fix_it():

    class NoTargetModules(MomentumTargetSelfSupervisor):

        def loss(self, inputs, data_samples, **kwargs):
            return {}

    with pytest.raises(TypeError, match='target_modules'):
        NoTargetModules(backbone=dict(type=TinyEncoder)).build_target()

    class NoBuild(NoTargetModules):
        target_modules = ('backbone', )

    model = NoBuild(backbone=dict(type=TinyEncoder))
    with pytest.raises(AttributeError, match=r'self\.build_target'):
        model.update_target(0, 1)
    NoBuild.target_modules = ('backbone', 'projector')
    with pytest.raises(AttributeError, match='not built'):
        model.build_target()


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_the_fused_ema_equals_the_per_tensor_formula(dtype):
    """The multi-tensor update gives theta_t <- m theta_t + (1 - m) theta_s for every
    parameter, as the per-tensor loop it replaced (to rounding), with the cosine m,
    and leaves the buffers alone."""
    from cmae_mm.models.utils import MomentumTarget
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(7, 5), nn.BatchNorm1d(5), nn.Linear(5,
                                                                         3)).to(dtype)
    target = MomentumTarget(online, momentum=0.01, end_momentum=0.0)
    with torch.no_grad():  # the online modules moved away from the copy
        for p in online.parameters():
            p.add_(torch.randn_like(p))
        target.module[1].running_mean.fill_(3.)
    before = {n: p.clone() for n, p in target.module.named_parameters()}
    cur, total = 37, 100
    m = 1 - (1 - 0.99) * (math.cos(math.pi * cur / total) + 1) / 2
    target.update_parameters(online, cur, total)
    eps = torch.finfo(dtype).eps
    for name, src in online.named_parameters():
        expect = before[name] * m + src.detach() * (1 - m)  # independent formula
        got = dict(target.module.named_parameters())[name]
        torch.testing.assert_close(got, expect, rtol=4 * eps, atol=4 * eps)
        assert not torch.equal(got, before[name])
    assert int(target.steps) == 1
    assert torch.all(target.module[1].running_mean == 3.)  # buffers untouched
