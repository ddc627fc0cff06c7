"""Misspelled options stop a run before it starts, naming the key
(cmae_mm/engine/option_check.py, called by CheckedRunner; docs/reliability.md).

Before the check, ``default_hooks.checkpoint.intervl=4`` trained until the first save
and died there (MMEngine's CheckpointHook hands unknown options to
``Runner.save_checkpoint``), with no checkpoint written."""
import glob
import importlib.util
import os
import os.path as osp

import pytest
from mmengine.config import Config

from cmae_mm.engine.option_check import (accepted_arguments, check_options,
                                         find_option_errors)
from cmae_mm.engine.runner import CheckedRunner

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CFG = 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py'
CLS_CFG = 'configs/cls/cmae_vit-tiny-p4_1xb128-linear-coslr-10e_fashion-mnist-32px.py'
CONFIGS = sorted(
    osp.relpath(p, REPO)
    for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p)
#: the package a config folder's configs inherit from, beyond MMPretrain
NEEDS = {'seg': 'mmseg', 'det': 'mmdet'}


@pytest.mark.parametrize('config', CONFIGS)
def test_shipped_configs_pass_the_check(config):
    """No false positive: every option of every shipped config is taken by the class
    it is given to (nothing is built)."""
    package = NEEDS.get(config.split(os.sep)[1])
    if package and importlib.util.find_spec(package) is None:
        pytest.skip(f'{package} is not installed: the config inherits its bases and '
                    f'registries (full profile: bash tools/setup_env.sh)')
    cfg = Config.fromfile(osp.join(REPO, config))
    assert find_option_errors(cfg, CheckedRunner) == []


@pytest.mark.parametrize('precision', ['amp', 'fp32', 'fp16', 'bf16'])
def test_precision_flags_pass_the_check(precision):
    """tools/train.py --amp / --precision rewrite optim_wrapper: still no error."""
    from cmae_mm.engine.optimizers import set_precision
    for path in (CFG, CLS_CFG):
        cfg = Config.fromfile(osp.join(REPO, path))
        set_precision(cfg, precision, f'--precision {precision}')
        assert find_option_errors(cfg, CheckedRunner) == []


def _cfg(path=CLS_CFG, **options) -> Config:
    cfg = Config.fromfile(osp.join(REPO, path))
    cfg.merge_from_dict(options)
    return cfg


@pytest.mark.parametrize('key, value, owner, suggestion', [
    ('default_hooks.checkpoint.intervl', 4, 'SafeCheckpointHook', 'interval'),
    ('default_hooks.logger.intervall', 4, 'LoggerHook', 'interval'),
    ('train_cfg.max_epoch', 4, 'EpochBasedTrainLoop', 'max_epochs'),
    ('val_cfg.fp61', True, 'ValLoop', None),
    ('train_dataloader.num_worker', 0, 'DataLoader', 'num_workers'),
    ('test_dataloader.pin_memroy', True, 'DataLoader', 'pin_memory'),
    ('val_dataloader.sampler.shufle', False, 'DefaultSampler', 'shuffle'),
    ('train_dataloader.dataset.data_rot', 'x', 'FashionMNIST', 'data_root'),
    ('train_dataloader.collate_fn._scope_', 'mmpretrain', 'default_collate', None),
    ('optim_wrapper.optimizer.momentun', 0.9, 'LARS', 'momentum'),
    ('optim_wrapper.loss_scal', 'dynamic', 'MixedPrecisionOptimWrapper', 'loss_scale'),
    ('param_scheduler.1.eta_mn', 0.0, 'CosineAnnealingLR', 'eta_min'),
    ('test_evaluator.topK', (1, ), 'Accuracy', 'topk'),
    ('log_processor.window', 5, 'LogProcessor', 'window_size'),
])
def test_each_part_names_the_key(key, value, owner, suggestion):
    """A typo in each part the Runner builds (also parts a training run builds late,
    or never: the test loop) is found, with the key, the class and a suggestion."""
    errors = find_option_errors(_cfg(**{key: value}), CheckedRunner)
    assert len(errors) == 1, errors
    leaf = key.rsplit('.', 1)[1]
    assert errors[0].startswith(f"{key}: {owner} got an unexpected keyword argument "
                                f"'{leaf}'")
    if suggestion:
        assert f"(did you mean '{suggestion}'?)" in errors[0]


def test_paramwise_cfg_of_the_default_constructor():
    cfg = _cfg(CFG, **{'optim_wrapper.paramwise_cfg.bias_decay_mlt': 0.0})
    cfg.optim_wrapper.paramwise_cfg.custom_keys.ln['decay_mul'] = 0.0
    errors = find_option_errors(cfg, CheckedRunner)
    assert len(errors) == 2, errors
    assert errors[0].startswith('optim_wrapper.paramwise_cfg.bias_decay_mlt: ')
    assert "(did you mean 'bias_decay_mult'?)" in errors[0]
    assert errors[1].startswith(
        "optim_wrapper.paramwise_cfg.custom_keys['ln'].decay_mul: ")


def test_check_options_lists_all_and_names_the_fix():
    cfg = _cfg(**{'default_hooks.checkpoint.intervl': 4, 'train_cfg.max_epoch': 2})
    with pytest.raises(TypeError) as err:
        check_options(cfg, CheckedRunner)
    text = str(err.value)
    assert '2 config option(s)' in text and 'nothing was trained' in text
    assert 'default_hooks.checkpoint.intervl' in text and 'train_cfg.max_epoch' in text
    assert '--cfg-options' in text


class _Base:

    def __init__(self, a, b=1):
        pass


class _Forwards(_Base):

    def __init__(self, c=2, **kwargs):
        super().__init__(**kwargs)


class _Stores:

    def __init__(self, d=3, **kwargs):
        self.extra = kwargs  # where they go is unknown: anything is accepted


class _KeepsThem(_Base):

    def __init__(self, e=4, **kwargs):
        super().__init__(a=0)  # the base is called, but without the kwargs
        self.extra = kwargs


def test_kwargs_are_followed_to_the_base_class():
    """Followed only where passed on (``super().__init__(..., **kwargs)``);
    elsewhere any keyword is accepted (no false positive)."""
    assert accepted_arguments(_Forwards) == (['c', 'a', 'b'], '')
    assert accepted_arguments(_Stores) is None
    assert accepted_arguments(_KeepsThem) is None


def test_checkpoint_hook_kwargs_follow_the_runners_save_checkpoint():
    """CheckpointHook's **kwargs go to the runner's save_checkpoint: a runner whose
    save_checkpoint takes **kwargs of its own (passed nowhere) accepts anything."""
    from mmengine.hooks import CheckpointHook
    from mmengine.runner import Runner

    names, note = accepted_arguments(CheckpointHook, CheckedRunner)
    assert 'interval' in names and 'meta' not in names and 'save_checkpoint' in note

    class OpenRunner(Runner):

        def save_checkpoint(self, out_dir, filename, **kwargs):
            pass

    class MoreRunner(Runner):

        def save_checkpoint(self, *args, compress=False, **kwargs):
            super().save_checkpoint(*args, **kwargs)

    assert accepted_arguments(CheckpointHook, OpenRunner) is None
    names, _ = accepted_arguments(CheckpointHook, MoreRunner)
    assert 'compress' in names


# ------------------------------------------------------------ through tools/train.py
def _train(run_tool, work, data, option):
    proc, _ = run_tool([
        'tools/train.py', CFG, '--work-dir', work, '--cfg-options',
        f'train_dataloader.dataset.data_root={data}', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'train_cfg.max_iters=2',
        'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=1', option
    ],
                       check=False)
    return proc, proc.stdout + proc.stderr


@pytest.mark.e2e
@pytest.mark.parametrize(
    'option, message',
    [
        # MMEngine: trains, then TypeError in Runner.save_checkpoint at the first save
        ('default_hooks.checkpoint.intervl=1',
         "default_hooks.checkpoint.intervl: SafeCheckpointHook got an unexpected "
         "keyword argument 'intervl' (did you mean 'interval'?)"),
        ('train_dataloader.num_worker=0',
         "train_dataloader.num_worker: DataLoader got an unexpected keyword argument "
         "'num_worker' (did you mean 'num_workers'?)"),
        ('optim_wrapper.optimizer.betass=(0.9,0.99)',
         "optim_wrapper.optimizer.betass: AdamW got an unexpected keyword argument "
         "'betass' (did you mean 'betas'?)"),
    ],
    ids=['hook', 'dataloader', 'optimizer'])
def test_train_stops_before_the_first_iteration(run_tool, photo_folder, tmp_path,
                                                option, message):
    work = tmp_path / 'work'
    proc, out = _train(run_tool, work, photo_folder, option)
    assert proc.returncode != 0
    assert message in out
    assert 'Correct or remove these keys' in out
    assert 'Iter(train)' not in out  # no iteration ran (logger interval 1)
    assert not list(work.rglob('*.pth')) and not (work / 'last_checkpoint').exists()
