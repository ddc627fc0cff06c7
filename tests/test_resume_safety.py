"""What ``--resume`` resumes, through real runs of tools/train.py on the tiny CMAE
config (docs/reliability.md): ``last_checkpoint`` relative to the work dir, the run
fingerprint of every checkpoint, ``max_keep_ckpts`` across a resume."""
import json
import os
import shutil

import pytest
import torch

CFG = 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py'
NARROW = [  # the tiny model at half its width
    'model.backbone.arch.embed_dims=96', 'model.neck.embed_dim=96',
    'model.feature_decoder.embed_dim=96', 'model.projector.in_channels=96'
]

PROBE = '''
import json, os
from mmengine.hooks import Hook


class CheckpointProbe(Hook):
    """Writes the checkpoints present when each save begins; fails the save of
    iteration ``fail_at``, as a full disk would."""

    def __init__(self, out, fail_at=-1):
        self.out, self.fail_at = out, fail_at

    def before_save_checkpoint(self, runner, checkpoint):
        step = checkpoint['meta']['iter']
        names = sorted(p for p in os.listdir(runner.work_dir) if p.endswith('.pth'))
        with open(self.out, 'a') as f:
            f.write(json.dumps([step, names]) + '\\n')
        if step == self.fail_at:
            raise OSError(f'injected: no space left while saving iteration {step}')
'''


def train(run_tool, work, data, *options, resume=False, check=True, env=None):
    args = ['tools/train.py', CFG, '--work-dir', str(work)]
    args += ['--resume'] if resume is True else (['--resume', resume] if resume else [])
    args += [
        '--cfg-options', f'train_dataloader.dataset.data_root={data}',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'default_hooks.logger.interval=1', 'log_processor.window_size=1',
        'default_hooks.checkpoint.interval=1', *options
    ]
    if '--accept-foreign-checkpoint' in options:  # a flag, not a config option
        args.remove('--accept-foreign-checkpoint')
        args.insert(4, '--accept-foreign-checkpoint')
    proc, _ = run_tool(args, check=check, env=env)
    return proc, proc.stdout + proc.stderr


def checkpoints(work):
    return sorted(p for p in os.listdir(work) if p.endswith('.pth'))


def fingerprint(path):
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    return ckpt['meta']['run_fingerprint']


def refusal(out):
    """The line of the error that stopped a resume."""
    return next(line for line in out.splitlines() if 'Cannot resume from' in line)


def trained(out):
    """Whether the run logged a training iteration."""
    return 'Iter(train)' in out


@pytest.mark.e2e
def test_copied_work_dir_resumes_its_own_checkpoints(run_tool, photo_folder, tmp_path):
    """last_checkpoint names the checkpoint relative to the work dir: a copy resumes
    from its own files and leaves the original alone; an old absolute
    last_checkpoint pointing outside is named in a warning and the copy's own file
    of that name is used."""
    first, copy = tmp_path / 'first', tmp_path / 'copy'
    keep = 'default_hooks.checkpoint.max_keep_ckpts=5'
    train(run_tool, first, photo_folder, 'train_cfg.max_iters=2', keep)
    assert (first / 'last_checkpoint').read_text() == 'iter_2.pth'
    shutil.copytree(first, copy)
    proc, out = train(
        run_tool, copy, photo_folder, 'train_cfg.max_iters=3', keep, resume=True)
    assert f'the newest intact checkpoint is {copy / "iter_2.pth"}' in out
    assert 'resumed epoch: 0, iter: 2' in out
    assert checkpoints(copy) == ['iter_1.pth', 'iter_2.pth', 'iter_3.pth']
    assert checkpoints(first) == ['iter_1.pth', 'iter_2.pth']  # untouched
    assert (first / 'last_checkpoint').read_text() == 'iter_2.pth'
    assert (copy / 'last_checkpoint').read_text() == 'iter_3.pth'
    # the copy kept the run (its id), so no fingerprint complaint
    assert fingerprint(copy / 'iter_3.pth') == fingerprint(first / 'iter_2.pth')
    assert 'another run' not in out

    # an older cmae_mm wrote absolute paths: in a copy they name the original
    (copy / 'last_checkpoint').write_text(str(first / 'iter_2.pth'))
    proc, out = train(
        run_tool, copy, photo_folder, 'train_cfg.max_iters=4', keep, resume=True)
    assert f'names {first / "iter_2.pth"}, outside the work dir' in out
    assert f'using {copy / "iter_2.pth"}' in out
    assert f'the newest intact checkpoint is {copy / "iter_3.pth"}' in out
    assert 'resumed epoch: 0, iter: 3' in out
    assert checkpoints(first) == ['iter_1.pth', 'iter_2.pth']
    assert (copy / 'last_checkpoint').read_text() == 'iter_4.pth'


@pytest.mark.e2e
def test_checkpoint_of_another_run_is_refused_unless_accepted(
        run_tool, photo_folder, tmp_path):
    """The newest checkpoint replaced by one of another run with the same iteration:
    --resume stops before any training step, naming the run ids (and the seeds
    where they differ); --accept-foreign-checkpoint resumes it, with a warning, and
    the run continues under that checkpoint's id."""
    work, twin, other = tmp_path / 'work', tmp_path / 'twin', tmp_path / 'other'
    train(run_tool, work, photo_folder, 'train_cfg.max_iters=2')
    train(run_tool, twin, photo_folder, 'train_cfg.max_iters=2')  # same seed
    train(run_tool, other, photo_folder, 'train_cfg.max_iters=2', 'randomness.seed=1')
    own = fingerprint(work / 'iter_2.pth')
    assert json.loads((work / 'run_fingerprint.json').read_text())['run_id'] == \
        own['run_id']
    twin_print = fingerprint(twin / 'iter_2.pth')
    assert twin_print.pop('run_id') != own['run_id']  # otherwise the same
    assert twin_print == {k: v for k, v in own.items() if k != 'run_id'}

    # same config and seed, another run: the run ids differ
    shutil.copy(twin / 'iter_2.pth', work / 'iter_2.pth')
    proc, out = train(
        run_tool, work, photo_folder, 'train_cfg.max_iters=3', resume=True, check=False)
    assert proc.returncode != 0 and not trained(out)
    assert 'it is a checkpoint of another run or another model' in out
    assert (f'run id: checkpoint {fingerprint(twin / "iter_2.pth")["run_id"]}, '
            f"this work dir's run {own['run_id']}") in out
    assert 'seed:' not in refusal(out) and '--accept-foreign-checkpoint' in out
    assert checkpoints(work) == ['iter_2.pth']

    # another seed: named too
    shutil.copy(other / 'iter_2.pth', work / 'iter_2.pth')
    proc, out = train(
        run_tool, work, photo_folder, 'train_cfg.max_iters=3', resume=True, check=False)
    assert proc.returncode != 0 and not trained(out)
    assert 'run id: checkpoint' in refusal(out)
    assert 'seed: checkpoint 1, this config 0' in refusal(out)
    assert checkpoints(work) == ['iter_2.pth']

    # accepted on purpose: resumed, the run takes the checkpoint's id
    proc, out = train(
        run_tool,
        work,
        photo_folder,
        'train_cfg.max_iters=3',
        '--accept-foreign-checkpoint',
        resume=True)
    assert 'Accepted (accept_foreign_checkpoint)' in out
    assert 'resumed epoch: 0, iter: 2' in out and trained(out)
    other_id = fingerprint(other / 'iter_2.pth')['run_id']
    assert fingerprint(work / 'iter_3.pth')['run_id'] == other_id
    assert json.loads((work / 'run_fingerprint.json').read_text())['run_id'] == other_id
    # the flag is for resumes only
    proc, out = train(
        run_tool,
        tmp_path / 'new',
        photo_folder,
        'train_cfg.max_iters=1',
        '--accept-foreign-checkpoint',
        check=False)
    assert proc.returncode != 0 and 'only applies to a resume' in out


@pytest.mark.e2e
def test_resume_with_another_model_is_refused(run_tool, photo_folder, tmp_path):
    """A changed model config (more heads: same tensor shapes) is refused before
    training, naming the changed option, and accepted with the flag; a changed
    width (other shapes) is refused even with the flag, naming the shapes."""
    work = tmp_path / 'work'
    train(run_tool, work, photo_folder, 'train_cfg.max_iters=2')
    heads = 'model.backbone.arch.num_heads=6'
    proc, out = train(
        run_tool,
        work,
        photo_folder,
        'train_cfg.max_iters=3',
        heads,
        resume=True,
        check=False)
    assert proc.returncode != 0 and not trained(out)
    assert 'it is a checkpoint of another run or another model' in out
    assert 'model config: hash' in out
    assert 'model.backbone.arch.num_heads: 3 -> 6' in out
    assert 'run id' not in refusal(out)  # the same run, changed
    assert checkpoints(work) == ['iter_2.pth']

    for flag in ([], ['--accept-foreign-checkpoint']):
        proc, out = train(
            run_tool,
            work,
            photo_folder,
            'train_cfg.max_iters=3',
            *NARROW,
            *flag,
            resume=True,
            check=False)
        assert proc.returncode != 0 and not trained(out)
        assert "it is not a checkpoint of this config's model" in out
        assert 'backbone.cls_token: checkpoint [1, 1, 192] vs model [1, 1, 96]' in out
        assert '--accept-foreign-checkpoint does not apply' in out
        assert checkpoints(work) == ['iter_2.pth']

    proc, out = train(
        run_tool,
        work,
        photo_folder,
        'train_cfg.max_iters=3',
        heads,
        '--accept-foreign-checkpoint',
        resume=True)
    assert 'model.backbone.arch.num_heads: 3 -> 6' in out and 'Accepted' in out
    assert 'resumed epoch: 0, iter: 2' in out and checkpoints(work) == ['iter_3.pth']


@pytest.mark.e2e
def test_max_keep_ckpts_holds_across_a_resume(run_tool, run_env, photo_folder,
                                              tmp_path):
    """max_keep_ckpts=1 with resumes: one checkpoint at the end; the one resumed
    from is removed only after the next one is written (a failed save keeps it)."""
    (tmp_path / 'ckpt_probe.py').write_text(PROBE)
    env = dict(PYTHONPATH=f'{tmp_path}{os.pathsep}{run_env["PYTHONPATH"]}')
    work, log = tmp_path / 'work', tmp_path / 'saves.jsonl'
    probe = [
        'default_hooks.checkpoint.max_keep_ckpts=1',
        'default_hooks.probe.type=ckpt_probe.CheckpointProbe',
        f'default_hooks.probe.out={log}'
    ]
    train(run_tool, work, photo_folder, 'train_cfg.max_iters=2', *probe, env=env)
    assert checkpoints(work) == ['iter_2.pth']
    # the save of iteration 3 fails: the checkpoint resumed from stays
    proc, out = train(
        run_tool,
        work,
        photo_folder,
        'train_cfg.max_iters=4',
        *probe,
        'default_hooks.probe.fail_at=3',
        resume=True,
        check=False,
        env=env)
    assert proc.returncode != 0 and 'injected: no space left' in out
    assert checkpoints(work) == ['iter_2.pth']
    proc, out = train(
        run_tool,
        work,
        photo_folder,
        'train_cfg.max_iters=4',
        *probe,
        resume=True,
        env=env)
    assert 'resumed epoch: 0, iter: 2' in out
    assert checkpoints(work) == ['iter_4.pth']
    saves = [tuple(json.loads(line)) for line in log.read_text().splitlines()]
    assert saves == [
        (1, []),
        (2, ['iter_1.pth']),
        (3, ['iter_2.pth']),  # the failed save
        (3, ['iter_2.pth']),  # resumed from iter_2: still there while 3 is saved
        (4, ['iter_3.pth']),
    ]
    assert (work / 'last_checkpoint').read_text() == 'iter_4.pth'


def test_optimizer_state_of_other_parameters_is_named():
    """An optimizer state restored by position onto parameters of other shapes (the
    Adam crash of a resume whose model changed) is named before any step; the
    state of the same parameters in the same order passes."""
    from mmengine.optim import OptimWrapper

    from cmae_mm.engine.runner import optimizer_mismatch

    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 3))
    params = list(model.parameters())  # [3x2], [3], [3x3], [3]
    saved_opt = torch.optim.Adam(params)
    model(torch.ones(1, 2)).sum().backward()
    saved_opt.step()
    saved = saved_opt.state_dict()

    same = OptimWrapper(torch.optim.Adam(params))
    assert optimizer_mismatch(same, saved, model) == []
    swapped = OptimWrapper(torch.optim.Adam(params[2:] + params[:2]))
    problems = optimizer_mismatch(swapped, saved, model)
    assert problems and problems[0].startswith('1.weight: optimizer state exp_avg '
                                               '[3, 2] vs parameter [3, 3]'), problems
    fewer = OptimWrapper(torch.optim.Adam(params[:2]))
    assert '2 here' in optimizer_mismatch(fewer, saved, model)[0]
