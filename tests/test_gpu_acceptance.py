"""tools/analysis/gpu_acceptance.py: the whole check on this CPU machine (every stage
passes, with plausible numbers), a spent budget and a missing GPU reported, and a
timed-out stage's processes killed, not left running."""
import json
import os
import subprocess
import time

import pytest

TOOL = 'tools/analysis/gpu_acceptance.py'


@pytest.mark.e2e
def test_cpu_acceptance_run_passes_every_stage(run_tool, tmp_path):
    out = tmp_path / 'acceptance.md'
    proc, seconds = run_tool([TOOL, '--device', 'cpu', '--out', str(out)], timeout=900)
    print(f'\n[gpu_acceptance --device cpu] {seconds:.0f} s\n{out.read_text()}')
    result = json.loads((tmp_path / 'acceptance.json').read_text())
    rows = {r['stage']: r for r in result['rows']}
    assert list(rows) == [
        'env', 'cmae_fp16', 'cmae_bf16', 'conmim_fp16', 'conmim_bf16', 'augment',
        'dist_resume', 'seg', 'det', 'knn'
    ]
    assert {r['status'] for r in rows.values()} == {'ok'}, out.read_text()
    assert result['passed'] and result['device'] == 'cpu'
    # the table printed and written
    assert '| dist_resume | ok |' in proc.stdout and out.read_text() in proc.stdout
    env = rows['env']['numbers']
    assert env['gloo'] and env['mmcv_compiled_cuda'] and env['torch']
    assert env['roi_align_fallback_max_diff'] < 1e-4
    for name in ('cmae_fp16', 'cmae_bf16', 'conmim_fp16', 'conmim_bf16'):
        n = rows[name]['numbers']
        assert n['images_per_s'] > 0 and 0 < n['mfu'] <= 1, (name, n)
        assert n['peak_memory_gib'] > 0 and n['gflops_per_image'] > 0.5, (name, n)
        fp16 = name.endswith('fp16')
        assert n['autocast_dtype'] == ('float16' if fp16 else 'bfloat16')
        assert (n['loss_scale'] is not None) == fp16, (name, n)
        assert n['config'].startswith(name.split('_')[0])  # the tiny demo configs
    assert rows['augment']['numbers']['passed'] > 10  # CUDA tests skipped here
    dist = rows['dist_resume']['numbers']
    assert dist['backend'] == 'gloo'
    assert dist['resumed_iter'] == dist['checkpoint_iter'] == 2
    assert dist['resumed_iters'] == [3, 4, 5, 6] and dist['repeated_losses_equal']
    assert len(rows['seg']['numbers']['losses']) == 10
    assert 0 <= rows['seg']['numbers']['mIoU'] <= 100
    det = rows['det']['numbers']
    # bfloat16 on a CPU: MMCV's CPU NMS has no bfloat16 kernel, torchvision's runs
    assert len(det['losses']) == 10 and det['ops'] in ('MMCV', 'torchvision fallback')
    assert 0 <= det['bbox_mAP'] <= 1 and 0 <= det['segm_mAP'] <= 1
    assert 0 <= rows['knn']['numbers']['knn/top1'] <= 100
    assert all(r['seconds'] > 0 for r in rows.values())


def test_spent_budget_skips_and_fails(run_tool, tmp_path):
    """The in-process env stage runs whatever the budget; knn, left without time, is
    skipped; the exit status says the run did not pass."""
    proc, _ = run_tool([
        TOOL, '--device', 'cpu', '--stages', 'env', 'knn', '--budget', '0', '--out',
        str(tmp_path / 'a.md'), '--work-dir',
        str(tmp_path / 'work')
    ],
                       check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = json.loads((tmp_path / 'a.json').read_text())['rows']
    assert [(r['stage'], r['status'])
            for r in rows] == [('env', 'ok'),
                               ('knn', 'skipped (the 0 s --budget is spent)')]
    assert 'not passed: knn' in proc.stdout


def test_no_gpu_names_the_cpu_option(run_tool):
    proc, _ = run_tool([TOOL], check=False)  # CUDA_VISIBLE_DEVICES='' (run_env)
    assert proc.returncode != 0
    assert 'no usable CUDA device' in proc.stderr
    assert f'{TOOL} --device cpu' in proc.stderr


def test_stage_selection_and_error_lines(repo_root):
    import importlib.util
    spec = importlib.util.spec_from_file_location('gpu_acceptance',
                                                  os.path.join(repo_root, TOOL))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    args = tool.parse_args(['--device', 'cpu', '--stages', 'knn', 'train_step'])
    assert args.stages == [  # the tool's order, the group expanded
        'cmae_fp16', 'cmae_bf16', 'conmim_fp16', 'conmim_bf16', 'knn'
    ]
    text = ('Traceback (most recent call last):\n  File "x.py"\n'
            'ValueError: dtype float16 needs a GPU\n'
            'E1205 torch.distributed.elastic ... failed (exitcode: 1)\n')
    assert tool.error_line(text) == 'ValueError: dtype float16 needs a GPU'
    assert tool.error_line('a\nlast words\n\n') == 'last words'
    log = ('12/05 17:00:00 - mmengine - INFO - Iter(train) [ 3/10]  lr: 1e-3  '
           'loss: 0.5000  loss_rec: 0.4\nmmengine - INFO - resumed epoch: 0, iter: 2\n'
           'Iter(train) [4/10]  loss: nan  loss_ct: 1.0\n')
    assert tool.train_losses(log)[0] == 0.5 and str(tool.train_losses(log)[1]) == 'nan'
    with pytest.raises(tool.StageError, match='non-finite'):
        tool.check_losses(log, 2)


def test_timeout_kills_the_whole_process_group(tmp_path):
    """A timed-out ``bash`` that started a background child: both are killed."""
    from cmae_mm.testing import run_subprocess
    pid_file = tmp_path / 'pid'
    t0 = time.time()
    with pytest.raises(subprocess.TimeoutExpired) as info:
        run_subprocess(
            ['bash', '-c', f'sleep 60 & echo $! > {pid_file}; echo started; wait'],
            dict(os.environ),
            str(tmp_path),
            timeout=2,
            new_session=True)
    assert time.time() - t0 < 30 and 'started' in info.value.output
    child = int(pid_file.read_text())
    for _ in range(50):
        if not alive(child):
            break
        time.sleep(0.1)
    else:
        os.kill(child, 9)
        pytest.fail(f'the background child {child} survived the timeout')


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a killed orphan may stay a zombie until reaped)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False
