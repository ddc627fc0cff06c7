"""The checkpoint home (cmae_mm/engine/checkpoint.py): reading weights-only with the
allow-list installed explicitly, verifying, extracting an encoder, the finite check;
and plain MMEngine ``Runner`` resumes of our checkpoints (docs/checkpoints.md)."""
import subprocess

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from cmae_mm.engine.checkpoint import (check_finite, extract_encoder,
                                       load_checkpoint_file,
                                       load_checkpoint_weights_only, verify_checkpoint)


def _mmengine_like_checkpoint(path) -> None:
    """What ``Runner.save_checkpoint`` writes besides tensors: the message hub's
    ``HistoryBuffer`` objects and numpy values."""
    hub = MessageHub('checkpoint_home_test')
    for v in (1.0, 0.5):
        hub.update_scalar('train/loss', v)
    hub.update_info('seed', np.int64(3))
    sd = {
        'backbone.w': torch.ones(2),
        'target_encoder.module.0.w': torch.zeros(2),
        'target_encoder.module.1.w': torch.zeros(1)
    }
    torch.save({
        'meta': {
            'seed': 3
        },
        'state_dict': sd,
        'message_hub': hub.state_dict()
    }, path)


@pytest.fixture
def python(run_tool):
    """``python(code, *args)``: ``code`` in a fresh interpreter (nothing allow-listed
    yet), ``CompletedProcess`` back."""
    return lambda code, *args: run_tool(['-c', code, *args], timeout=300, check=False)[0
                                                                                       ]


@pytest.mark.e2e
def test_importing_cmae_mm_installs_nothing_the_home_does(tmp_path, python):
    path = tmp_path / 'mmengine.pth'
    _mmengine_like_checkpoint(path)
    proc = python(
        'import sys, torch\n'
        'from mmengine.logging import HistoryBuffer\n'
        'import cmae_mm\n'
        'assert HistoryBuffer not in torch.serialization.get_safe_globals()\n'
        'try:\n'
        '    torch.load(sys.argv[1], weights_only=True)\n'
        'except Exception as e:\n'
        '    print("plain torch.load:", str(e).splitlines()[0])\n'
        'from cmae_mm.engine.checkpoint import load_checkpoint_file\n'
        'ckpt = load_checkpoint_file(sys.argv[1])\n'
        'print("home:", sorted(ckpt), ckpt["message_hub"]["log_scalars"]'
        '["train/loss"].mean())\n'
        'torch.load(sys.argv[1], weights_only=True)\n'
        'print("after the home: torch.load works")\n', path)
    assert proc.returncode == 0, proc.stderr
    # without the allow-list, torch refuses the MMEngine objects
    assert 'plain torch.load: Weights only load failed' in proc.stdout
    assert "home: ['message_hub', 'meta', 'state_dict'] 0.75" in proc.stdout
    assert 'after the home: torch.load works' in proc.stdout


def test_verify_reasons(tmp_path):
    good = tmp_path / 'good.pth'
    _mmengine_like_checkpoint(good)
    assert verify_checkpoint(str(good)) is None
    data = good.read_bytes()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
    (tmp_path / 'empty.pth').write_bytes(b'')
    (tmp_path / 'text.pth').write_bytes(b'hello world')
    torch.save([torch.ones(1)], tmp_path / 'list.pth')
    torch.save({'model': {}}, tmp_path / 'nostate.pth')
    assert verify_checkpoint(str(
        tmp_path / 'cut.pth')) == ('does not load (a truncated zip archive)')
    assert verify_checkpoint(str(tmp_path / 'empty.pth')) == 'empty file (0 bytes)'
    assert verify_checkpoint(
        str(tmp_path /
            'text.pth')) == ('does not load (neither a zip archive nor a pickle)')
    assert verify_checkpoint(str(
        tmp_path / 'list.pth')) == ('not an MMEngine checkpoint (not a dict)')
    assert verify_checkpoint(str(
        tmp_path / 'nostate.pth')) == ('not an MMEngine checkpoint (no state_dict)')
    assert verify_checkpoint(str(tmp_path / 'absent.pth')).startswith('cannot be read')
    with pytest.raises(ValueError, match='not a complete PyTorch checkpoint.*cut.pth'):
        load_checkpoint_file(str(tmp_path / 'cut.pth'))


def test_reading_code_is_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'hub': HistoryBuffer, 'x': subprocess.Popen}, path)
    with pytest.raises(RuntimeError, match='cannot be read weights-only'):
        load_checkpoint_file(str(path))
    assert verify_checkpoint(str(path)).startswith('does not load (UnpicklingError')


def test_extract_encoder_and_finite_check(tmp_path):
    path = tmp_path / 'mmengine.pth'
    _mmengine_like_checkpoint(path)
    sd = load_checkpoint_weights_only(str(path))
    assert list(extract_encoder(sd, 'online')) == ['w']
    torch.testing.assert_close(extract_encoder(sd, 'target')['w'], torch.zeros(2))
    with pytest.raises(KeyError, match="No key starts with 'backbone.'.*'neck.'"):
        extract_encoder({'neck.w': torch.ones(1)}, 'online')
    with pytest.raises(KeyError, match='encoder must be one of'):
        extract_encoder(sd, 'momentum')
    check_finite(sd, 'ok')
    sd['backbone.w'][1] = float('inf')
    with pytest.raises(ValueError, match=r"the online encoder has non-finite.*\['w'\]"):
        check_finite(extract_encoder(sd, 'online'), 'the online encoder')


# A plain MMEngine Runner (no CheckedRunner) on a toy model.
TOY_RUN = '''
import torch
from torch import nn
from mmengine.model import BaseModel
from mmengine.runner import Runner


class Toy(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, x, y, mode='tensor'):
        return dict(loss=((self.fc(x) - y)**2).mean())


def run(work_dir, hook, max_iters, resume, name):
    data = [dict(x=torch.full((2, ), float(i)), y=torch.ones(1)) for i in range(8)]
    Runner(
        model=Toy(),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(
            dataset=data,
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type=hook, by_epoch=False, interval=2)),
        resume=resume).train()
'''

RESUME = '''
import sys
from mmengine.logging import HistoryBuffer
import cmae_mm  # registers SafeCheckpointHook; installs no allow-list
assert HistoryBuffer not in torch.serialization.get_safe_globals()
plain, safe = sys.argv[1:]
try:
    run(plain, 'CheckpointHook', 4, True, 'plain_resume')
except Exception as e:
    print('plain CheckpointHook resume:', str(e).splitlines()[0])
run(safe, 'SafeCheckpointHook', 4, True, 'safe_resume')
print('SafeCheckpointHook resume: done')
'''


@pytest.mark.e2e
def test_plain_mmengine_runner_resumes_our_checkpoints(tmp_path, python):
    """In a fresh process, a plain MMEngine ``Runner`` resumes a checkpoint when its
    config uses ``SafeCheckpointHook`` (every cmae_mm runtime config): the hook installs
    the allow-list in ``before_run``. With MMEngine's own ``CheckpointHook`` and nothing
    else, torch refuses the file (docs/checkpoints.md names the fix: call
    ``allow_mmengine_checkpoint_globals()`` first)."""
    namespace = {}
    exec(TOY_RUN, namespace)
    plain, safe = tmp_path / 'plain', tmp_path / 'safe'
    namespace['run'](plain, 'CheckpointHook', 2, False, 'plain_first')
    namespace['run'](safe, 'SafeCheckpointHook', 2, False, 'safe_first')
    assert (plain / 'iter_2.pth').is_file() and (safe / 'iter_2.pth').is_file()
    proc = python(TOY_RUN + RESUME, plain, safe)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'plain CheckpointHook resume: Weights only load failed' in proc.stdout
    assert not (plain / 'iter_4.pth').exists()
    assert 'SafeCheckpointHook resume: done' in proc.stdout
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr
    assert (safe / 'iter_4.pth').is_file()
