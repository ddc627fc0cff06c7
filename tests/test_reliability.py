"""Faults injected into real runs of tools/train.py on the tiny CMAE config: what is
kept on disk, what is logged, how the run stops or resumes (docs/reliability.md)."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

CFG = 'configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py'
CONMIM_CFG = 'configs/pretrain/conmim_vit-tiny-p16_1xb8-20e_demo.py'


def train(run_tool, work, data, *options, resume=None, check=True, workers=0):
    args = ['tools/train.py', CFG, '--work-dir', work]
    if resume is not None:
        args += ['--resume'] + ([resume] if resume != 'auto' else [])
    args += [
        '--cfg-options', f'train_dataloader.dataset.data_root={data}',
        f'train_dataloader.num_workers={workers}',
        f'train_dataloader.persistent_workers={workers > 0}',
        'default_hooks.logger.interval=1', 'log_processor.window_size=1', *options
    ]
    proc, _ = run_tool(args, check=check)
    return proc, proc.stdout + proc.stderr


# ------------------------------------------------------------- checkpoint faults
@pytest.mark.e2e
def test_resume_skips_broken_checkpoints(run_tool, photo_folder, tmp_path):
    """A kill during a save (simulated: truncated newest checkpoint, a zero-byte one,
    an empty last_checkpoint): --resume loads the newest intact checkpoint, says
    which it skipped and why, and lists the options the resume discards."""
    work = tmp_path / 'work'
    ckpt = [
        'default_hooks.checkpoint.interval=2',
        'default_hooks.checkpoint.max_keep_ckpts=5'
    ]
    train(run_tool, work, photo_folder, 'train_cfg.max_iters=4', *ckpt)
    assert sorted(os.listdir(work)).count('iter_4.pth') == 1
    full = (work / 'iter_4.pth').read_bytes()
    (work / 'iter_4.pth').write_bytes(full[:len(full) // 3])  # truncated
    (work / 'iter_6.pth').write_bytes(b'')  # zero bytes
    (work / 'last_checkpoint').write_text('')  # empty
    # an explicit broken checkpoint is an error naming it
    proc, out = train(
        run_tool,
        work,
        photo_folder,
        'train_cfg.max_iters=6',
        *ckpt,
        resume=str(work / 'iter_4.pth'),
        check=False)
    assert proc.returncode != 0 and 'Cannot resume from' in out and 'iter_4.pth' in out
    proc, out = train(
        run_tool,
        work,
        photo_folder,
        'train_cfg.max_iters=6',
        'optim_wrapper.optimizer.lr=0.005',
        *ckpt,
        resume='auto')
    assert 'iter_6.pth: empty file (0 bytes)' in out
    assert 'iter_4.pth: does not load' in out
    assert 'the newest intact checkpoint is' in out and 'iter_2.pth' in out
    assert 'resumed epoch: 0, iter: 2' in out
    assert 'optim_wrapper.optimizer.lr: 0.001 -> 0.005' in out  # discarded option
    for name in ('iter_4.pth', 'iter_6.pth'):  # rewritten by the resumed run
        sd = torch.load(work / name, map_location='cpu', weights_only=False)
        assert sd['meta']['iter'] == int(name[5])
    assert (work / 'last_checkpoint').read_text().endswith('iter_6.pth')


@pytest.mark.e2e
def test_nothing_to_resume_and_rerun_without_resume(run_tool, photo_folder, tmp_path):
    work = tmp_path / 'work'
    proc, out = train(
        run_tool, work, photo_folder, 'train_cfg.max_iters=2', resume='auto')
    assert 'no checkpoint to resume' in out and 'starting from scratch' in out
    assert (work / 'iter_2.pth').is_file()
    before = (work / 'iter_2.pth').stat().st_mtime_ns
    proc, out = train(
        run_tool, work, photo_folder, 'train_cfg.max_iters=2', check=False)
    assert proc.returncode != 0
    assert 'already holds checkpoints' in out
    assert '--resume' in out and '--overwrite' in out
    assert (work / 'iter_2.pth').stat().st_mtime_ns == before  # untouched


def test_atomic_write_survives_a_kill(tmp_path, run_env):
    """SIGKILL in the middle of writing 400 MB: MMEngine's plain LocalBackend leaves a
    truncated file; the atomic backend leaves the old file whole (and no temp file)."""
    code = '''
import sys
from mmengine.fileio import LocalBackend
import cmae_mm.engine.checkpoint_saving as c
backend = c.AtomicLocalBackend() if sys.argv[2] == 'atomic' else LocalBackend()
print('start', flush=True)
backend.put(b'x' * (400 << 20), sys.argv[1])
'''
    for kind in ('plain', 'atomic'):
        target = tmp_path / f'{kind}.pth'
        target.write_bytes(b'old good checkpoint')
        proc = subprocess.Popen(
            [sys.executable, '-c', code, str(target), kind],
            env=run_env,
            stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b'start'
        deadline = time.time() + 30
        while time.time() < deadline:  # kill once the write has begun
            if kind == 'plain' and target.stat().st_size > 1 << 20:
                break
            if kind == 'atomic' and any(
                    p.name.endswith('.tmp') and p.stat().st_size > 1 << 20
                    for p in tmp_path.iterdir()):
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if kind == 'plain':
            size = target.stat().st_size
            assert 0 < size < 400 << 20  # the fault the atomic backend prevents
        else:
            assert target.read_bytes() == b'old good checkpoint'
            for p in tmp_path.iterdir():  # the half-written temp file is never the
                if p.name.endswith('.tmp'):  # checkpoint; resume ignores it
                    p.unlink()


# ------------------------------------------------------------- non-finite losses
@pytest.mark.e2e
def test_nan_loss_stops_before_the_update_and_keeps_the_good_checkpoint(
        run_tool, photo_folder, tmp_path):
    work = tmp_path / 'work'
    proc, out = train(
        run_tool,
        work,
        photo_folder,
        'train_cfg.max_iters=8',
        'optim_wrapper.optimizer.lr=1e6',
        'param_scheduler.0.start_factor=1.0',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=1',
        check=False)
    assert proc.returncode != 0
    assert 'FloatingPointError: Non-finite loss at iteration 2' in out
    assert 'loss_rc=nan' in out and 'loss_ct=' in out and 'learning rate 1e+06' in out
    # the good checkpoint of iteration 1 is kept, none was written for iteration 2
    assert sorted(p for p in os.listdir(work) if p.endswith('.pth')) == ['iter_1.pth']
    sd = torch.load(work / 'iter_1.pth', map_location='cpu', weights_only=False)
    assert all(
        torch.isfinite(v).all() for v in sd['state_dict'].values()
        if v.is_floating_point())


@pytest.mark.e2e
def test_nan_loss_skip_mode_stops_after_too_many(run_tool, photo_folder, tmp_path):
    work = tmp_path / 'work'
    proc, out = train(
        run_tool,
        work,
        photo_folder,
        'train_cfg.max_iters=8',
        'optim_wrapper.optimizer.lr=1e6',
        'param_scheduler.0.start_factor=1.0',
        "default_hooks.nonfinite_guard.action='skip'",
        'default_hooks.nonfinite_guard.max_consecutive_skips=2',
        check=False)
    assert proc.returncode != 0
    assert out.count('Update skipped') == 2
    assert '3 non-finite iterations in a row' in out


def test_guard_refuses_to_save_non_finite_weights():
    from types import SimpleNamespace

    from cmae_mm.engine.hooks import NonFiniteGuardHook
    hook = NonFiniteGuardHook()
    good = {'state_dict': {'a': torch.ones(3), 'steps': torch.tensor(3)}}
    hook.before_save_checkpoint(SimpleNamespace(iter=5), good)
    bad = {'state_dict': {'a': torch.ones(3), 'b': torch.tensor([1., float('nan')])}}
    with pytest.raises(FloatingPointError, match=r"\['b'\]"):
        hook.before_save_checkpoint(SimpleNamespace(iter=5), bad)
    with pytest.raises(ValueError, match='stop'):
        NonFiniteGuardHook(action='ignore')


# ------------------------------------------------------------------- data faults
@pytest.fixture
def faulty_folder(photo_folder, tmp_path):
    import shutil
    root = tmp_path / 'faulty'
    shutil.copytree(photo_folder, root)
    photo = sorted(p for p in os.listdir(photo_folder) if p.endswith('.jpg'))[0]
    data = open(osp.join(photo_folder, photo), 'rb').read()
    (root / 'zero.jpg').write_bytes(b'')
    (root / 'truncated.jpg').write_bytes(data[:len(data) // 2])
    (root / 'text.jpg').write_text('this is not an image\n')
    return root


def test_truncated_jpeg_is_detected_though_opencv_decodes_it(faulty_folder):
    import cv2
    import numpy as np

    from cmae_mm.datasets.transforms.loading import image_fault
    data = (faulty_folder / 'truncated.jpg').read_bytes()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None  # OpenCV alone would train on it
    assert image_fault(data) == 'truncated JPEG (no end-of-image marker)'
    assert image_fault(b'') == 'empty file (0 bytes)'
    for name in os.listdir(faulty_folder):
        if name not in ('zero.jpg', 'truncated.jpg', 'text.jpg'):
            assert image_fault((faulty_folder / name).read_bytes()) is None, name


@pytest.mark.e2e
def test_bad_images_skipped_listed_or_fatal(run_tool, faulty_folder, tmp_path):
    expected = {
        'zero.jpg': 'empty file (0 bytes)',
        'truncated.jpg': 'truncated JPEG (no end-of-image marker)',
        'text.jpg': 'cannot be decoded as an image'
    }
    # 3 bad of 12 with the default tolerance (1 %): stop, listing the files
    work = tmp_path / 'default'
    proc, out = train(
        run_tool, work, faulty_folder, 'train_cfg.max_iters=6', check=False, workers=2)
    assert proc.returncode != 0 and 'the dataset is broken' in out
    for name, reason in expected.items():
        assert f'{name}\t{reason}' in out
    # tolerated fraction: skipped with a warning, listed, training completes
    work = tmp_path / 'skip'
    proc, out = train(
        run_tool,
        work,
        faulty_folder,
        'train_cfg.max_iters=6',
        'train_dataloader.dataset.pipeline.0.max_bad_fraction=0.3',
        workers=2)
    assert 'Skipped bad image' in out and (work / 'iter_6.pth').is_file()
    listed = {
        line.split('\t')[0].rsplit('/', 1)[1]: line.split('\t')[1]
        for line in (work / 'bad_images.txt').read_text().splitlines()
    }
    assert listed == expected
    # strict mode: the first bad image stops the run, naming it
    proc, out = train(
        run_tool,
        tmp_path / 'strict',
        faulty_folder,
        'train_cfg.max_iters=6',
        "train_dataloader.dataset.pipeline.0.on_error='raise'",
        check=False)
    assert proc.returncode != 0
    assert 'Bad image' in out and any(f'{n}: {r}' in out for n, r in expected.items())


@pytest.mark.e2e
def test_check_dataset_tool_lists_bad_files(run_tool, faulty_folder, tmp_path):
    out_file = tmp_path / 'bad.txt'
    proc, _ = run_tool([
        'tools/analysis/check_dataset.py', CFG, '--workers', '2', '--out', out_file,
        '--cfg-options', f'train_dataloader.dataset.data_root={faulty_folder}'
    ],
                       check=False)
    assert proc.returncode == 1
    assert '12 images checked' in proc.stderr and '3 bad' in proc.stderr
    names = sorted(
        line.split('\t')[0].rsplit('/', 1)[1]
        for line in out_file.read_text().splitlines())
    assert names == ['text.jpg', 'truncated.jpg', 'zero.jpg']


# ------------------------------------------------------ validation at build time
def test_model_options_are_validated():
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import cmae_mm  # noqa: F401
    from cmae_mm.models.utils import MomentumTarget
    init_default_scope('mmpretrain')
    arch = dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64)
    for ratio in (0.0, 0.99):
        with pytest.raises(ValueError, match='model.backbone.mask_ratio'):
            MODELS.build(dict(type='CMAEViT', arch=arch, mask_ratio=ratio))
    with pytest.raises(ValueError, match='1 - m'):
        MomentumTarget(torch.nn.Linear(2, 2), momentum=0.004, end_momentum=2.0)


@pytest.mark.e2e
@pytest.mark.parametrize('config,options,message', [
    (CFG, ['train_dataloader.batch_size=1'], 'needs at least 2 samples per GPU'),
    (CFG, ['model.backbone.img_size=192'], 'model.neck.num_patches=196'),
    (CFG, [
        'model.backbone.img_size=192', 'model.neck.num_patches=144',
        'model.feature_decoder.num_patches=144'
    ], 'model.backbone.img_size is 192'),
    (CONMIM_CFG, ['train_dataloader.batch_size=16', 'train_dataloader.drop_last=True'
                  ], 'needs at least 16 images'),
])
def test_inconsistent_options_fail_naming_them(run_tool, photo_folder, tmp_path, config,
                                               options, message):
    proc, _ = run_tool([
        'tools/train.py', config, '--work-dir', tmp_path / 'w', '--cfg-options',
        f'train_dataloader.dataset.data_root={photo_folder}',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        *options
    ],
                       check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


# ------------------------------------------------------------ checkpoint inputs
@pytest.mark.e2e  # uses the session's real tiny pretraining checkpoint
def test_not_a_checkpoint_and_non_finite_encoder(tmp_path, cmae_pretrain_ckpt):
    from cmae_mm.engine.checkpoint import load_checkpoint_file
    from cmae_mm.transfer.weight_loading import load_pretrained_encoder
    random_file = tmp_path / 'random.pth'
    random_file.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match='not a PyTorch checkpoint: .*random.pth'):
        load_checkpoint_file(str(random_file))
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(ValueError, match='not a PyTorch checkpoint.*an empty file'):
        load_checkpoint_file(str(empty))
    ckpt = torch.load(cmae_pretrain_ckpt, map_location='cpu', weights_only=False)
    ckpt['state_dict']['backbone.layers.1.attn.qkv.weight'][0, 0] = float('nan')
    nan_file = tmp_path / 'nan.pth'
    torch.save({'state_dict': ckpt['state_dict']}, nan_file)
    from mmpretrain.models import VisionTransformer
    vit = VisionTransformer(
        arch=dict(embed_dims=192, num_layers=4, num_heads=3, feedforward_channels=768),
        out_type='raw')
    with pytest.raises(ValueError, match=r'non-finite.*layers.1.attn.qkv.weight'):
        load_pretrained_encoder(vit, str(nan_file), 'online')
