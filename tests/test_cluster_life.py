"""Cluster life through tools/train.py: preemption (SIGTERM -> checkpoint, exit 124,
resume), one run per work dir (a lock that names its holder and dies with it), and a
resume refused when the checkpoint is another model's (docs/training.md, Slurm;
docs/reliability.md)."""
import glob
import json
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config

from cmae_mm.engine.hooks import PREEMPTED_EXIT_CODE

CFG = 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py'
CONMIM_CFG = 'configs/pretrain/conmim_vit-tiny-p16_1xb8-20e_demo.py'


def train_args(work, data, *options, cfg=CFG, resume=False):
    return [
        sys.executable, 'tools/train.py', cfg, '--work-dir',
        str(work), *(['--resume'] if resume else []), '--cfg-options',
        f'train_dataloader.dataset.data_root={data}', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'default_hooks.logger.interval=1',
        'log_processor.window_size=1', *options
    ]


def start(args, env, repo_root, out_path):
    out = open(out_path, 'w')
    return subprocess.Popen(
        args, cwd=repo_root, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(predicate, timeout=240, what=''):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f'timed out waiting for {what}')


def iterations_logged(work) -> int:
    """The highest ``Iter(train) [N/...]`` in the run's log file."""
    done = 0
    for log in glob.glob(osp.join(str(work), '*', '*.log')):
        with open(log) as f:
            found = re.findall(r'Iter\(train\) \[\s*(\d+)/', f.read())
        done = max([done] + [int(n) for n in found])
    return done


@pytest.mark.e2e
def test_sigterm_saves_a_checkpoint_exits_124_and_resumes(run_env, run_tool, repo_root,
                                                          photo_folder, tmp_path):
    """SIGTERM mid-run: the iteration ends, iter_N.pth (N past the last interval
    checkpoint) is saved atomically and named in last_checkpoint, the exit status is
    124, and --resume continues at iteration N."""
    work = tmp_path / 'work'
    ckpt = [
        'default_hooks.checkpoint.interval=3',
        'default_hooks.checkpoint.max_keep_ckpts=5'
    ]
    proc = start(
        train_args(work, photo_folder, 'train_cfg.max_iters=200', *ckpt), run_env,
        repo_root, tmp_path / 'out1.txt')
    try:
        wait_for(lambda: iterations_logged(work) >= 4, what='4 iterations')
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
    finally:
        proc.kill()
    out = (tmp_path / 'out1.txt').read_text()
    assert rc == PREEMPTED_EXIT_CODE == 124, out[-3000:]
    assert 'SIGTERM received; stopped after iteration' in out
    reached = iterations_logged(work)
    path = work / f'iter_{reached}.pth'
    assert reached > 3 and path.is_file(), (reached, sorted(os.listdir(work)))
    assert (work / 'iter_3.pth').is_file()  # the last interval checkpoint before
    assert f'with the checkpoint {path}' in out
    assert (work / 'last_checkpoint').read_text().strip() == path.name  # relative
    sd = torch.load(path, map_location='cpu', weights_only=False)
    assert sd['meta']['iter'] == reached and 'optimizer' in sd
    assert not [p for p in os.listdir(work) if p.endswith('.tmp')]
    # a requeue reruns the same command with --resume: it continues from there
    proc, _ = run_tool(
        train_args(
            work,
            photo_folder,
            f'train_cfg.max_iters={reached + 1}',
            *ckpt,
            resume=True)[1:],
        timeout=300)
    out = proc.stdout + proc.stderr
    assert f'the newest intact checkpoint is {path}' in out
    assert f'resumed epoch: 0, iter: {reached}' in out
    assert (work / f'iter_{reached + 1}.pth').is_file()


SIGTERM_AT = """
import os, signal
from mmengine.hooks import Hook


class SigtermAt(Hook):
    \"\"\"SIGTERM to its own process during iteration ``iteration`` (from 1).\"\"\"

    def __init__(self, iteration):
        self.iteration = iteration

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.iteration:
            os.kill(os.getpid(), signal.SIGTERM)
"""


@pytest.mark.e2e
def test_epoch_based_stop_at_an_epoch_end_and_mid_epoch(run_tool, run_env, photo_folder,
                                                        tmp_path):
    """ConMIM demo (EpochBasedTrainLoop), SIGTERM at a known iteration: on the last
    iteration of epoch 1 the epoch completes (epoch_1.pth); mid-epoch 2 the run saves
    iter_{L+1}.pth; the resume replays epoch 2 from its start (MMEngine), and once
    epoch_2.pth is written the mid-epoch checkpoint is removed."""
    (tmp_path / 'sigterm_at.py').write_text(SIGTERM_AT)
    env = dict(PYTHONPATH=f'{tmp_path}{os.pathsep}{run_env["PYTHONPATH"]}')
    work = tmp_path / 'work'
    photos = len(os.listdir(photo_folder))
    per_epoch = -(-photos // 8)  # batch 8, drop_last=False
    assert per_epoch >= 2
    common = [
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=5'
    ]

    def run(*options, resume=False):
        args = train_args(
            work, photo_folder, *common, *options, cfg=CONMIM_CFG, resume=resume)[1:]
        proc, _ = run_tool(args, env=env, check=False, timeout=300)
        return proc.returncode, proc.stdout + proc.stderr

    signal_at = ['default_hooks.sigterm.type=sigterm_at.SigtermAt']
    rc, out = run(*signal_at, f'default_hooks.sigterm.iteration={per_epoch}')
    assert rc == 124, out[-3000:]
    assert sorted(p for p in os.listdir(work) if p.endswith('.pth')) == ['epoch_1.pth']
    rc, out = run(
        *signal_at, f'default_hooks.sigterm.iteration={per_epoch + 1}', resume=True)
    assert rc == 124, out[-3000:]
    mid = work / f'iter_{per_epoch + 1}.pth'
    meta = torch.load(mid, map_location='cpu', weights_only=False)['meta']
    assert (meta['epoch'], meta['iter']) == (1, per_epoch + 1)
    assert (work / 'last_checkpoint').read_text().strip() == mid.name  # relative
    rc, out = run('train_cfg.max_epochs=3', resume=True)
    assert rc == 0, out[-3000:]
    assert f'resumed epoch: 1, iter: {per_epoch + 1}' in out
    assert f'removed the mid-epoch checkpoint {mid}' in out and not mid.exists()
    meta = torch.load(
        work / 'epoch_3.pth', map_location='cpu', weights_only=False)['meta']
    assert meta['iter'] == 3 * per_epoch + 1  # epoch 2's first iteration, twice


@pytest.mark.e2e
def test_second_run_in_a_work_dir_is_refused_and_a_killed_holder_frees_it(
        run_env, run_tool, repo_root, photo_folder, tmp_path):
    """Two runs started together in one new work dir: one is refused at once, naming
    the other's pid; after SIGKILL of the holder a new run is not blocked."""
    work = tmp_path / 'work'
    args = train_args(work, photo_folder, 'train_cfg.max_iters=500')
    procs = [start(args, run_env, repo_root, tmp_path / f'out{i}.txt') for i in (0, 1)]
    try:

        def refused():  # index + 1 of the first run that ended
            return next((i + 1 for i, p in enumerate(procs) if p.poll() is not None), 0)

        loser = wait_for(refused, timeout=180, what='one run to be refused') - 1
        holder = procs[1 - loser]
        out = (tmp_path / f'out{loser}.txt').read_text()
        assert procs[loser].returncode != 0, out[-2000:]
        assert holder.poll() is None, 'the holder must still run'
        assert 'Another training run is using the work dir' in out
        assert f'pid {holder.pid} on host' in out and 'tools/train.py' in out
        info = json.loads((work / '.train.lock').read_text())
        assert info['pid'] == holder.pid
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    finally:
        for p in procs:
            p.kill()
    # the lock file stays, naming the dead holder, but no longer locks
    assert json.loads((work / '.train.lock').read_text())['pid'] == holder.pid
    proc, _ = run_tool(
        train_args(work, photo_folder, 'train_cfg.max_iters=1', resume=True)[1:],
        timeout=300)
    assert (work / 'iter_1.pth').is_file()


@pytest.mark.e2e
def test_resume_with_another_models_config_is_refused(run_tool, cmae_pretrain_ckpt,
                                                      photo_folder, tmp_path):
    """--resume of a CMAE work dir with the ConMIM config stops before training,
    naming keys, shapes and both configs, and the fix."""
    work = tmp_path / 'work'
    work.mkdir()
    shutil.copy(cmae_pretrain_ckpt, work / 'iter_2.pth')
    proc, _ = run_tool(
        train_args(work, photo_folder, cfg=CONMIM_CFG, resume=True)[1:],
        check=False,
        timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert 'Epoch(train)' not in out and 'Iter(train)' not in out
    assert 'different number of parameter groups' not in out
    assert f'Cannot resume from {work / "iter_2.pth"}: it is not a checkpoint of' in out
    assert 'cmae_vit-tiny-p16_1xb8-800iter_demo.py (model CMAE)' in out
    assert 'conmim_vit-tiny-p16_1xb8-20e_demo.py (model ConMIM)' in out
    assert re.search(r"\d+ of the model's \d+ parameters are not in the checkpoint",
                     out)
    assert re.search(r"\d+ of the checkpoint's \d+ tensors are not in the model", out)
    assert 'load_from=' in out


def test_slurm_train_asks_for_the_warning_signal_and_passes_124_on(tmp_path, repo_root):
    """tools/slurm_train.sh (with a stand-in srun): --signal=USR1@120 by default,
    SIGNAL= turns it off, and status 124 comes back with the hint to resume."""
    fake = tmp_path / 'bin'
    fake.mkdir()
    (fake / 'srun').write_text('#!/bin/bash\necho "$@" > "$SRUN_LOG"\nexit 124\n')
    (fake / 'srun').chmod(0o755)
    env = dict(os.environ, PATH=f'{fake}{os.pathsep}{os.environ["PATH"]}')
    for signal_env, expected in ((None, '--signal=USR1@120'), ('', None)):
        env['SRUN_LOG'] = str(tmp_path / 'srun.txt')
        if signal_env is not None:
            env['SIGNAL'] = signal_env
        proc = subprocess.run(
            ['bash', 'tools/slurm_train.sh', 'part', 'job', CFG,
             str(tmp_path / 'w')],
            cwd=repo_root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60)
        assert proc.returncode == 124
        assert 'continue with the same command and --resume' in proc.stderr
        srun_args = (tmp_path / 'srun.txt').read_text()
        assert '--launcher=slurm' in srun_args
        assert (expected in srun_args) if expected else '--signal' not in srun_args


REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIRS = ('configs/pretrain', 'configs/cls', 'configs/seg', 'configs/det',
               'configs/study')


@pytest.mark.parametrize(
    'config',
    sorted(f'{d}/{f}' for d in CONFIG_DIRS for f in os.listdir(osp.join(REPO, d))
           if f.endswith('.py')))
def test_every_training_config_has_the_preemption_hook(config, repo_root):
    cfg = Config.fromfile(osp.join(repo_root, config))
    hooks = list((cfg.get('default_hooks') or {}).values()) + list(
        cfg.get('custom_hooks') or [])
    assert [h for h in hooks if h and h.get('type') == 'PreemptionHook'], config
