"""The Fashion-MNIST study: MAE vs CMAE vs ConMIM under the same budget.

    python tools/study/fashion_mnist_study.py [--work-dir work_dirs/fashion_mnist_study]
        [--methods mae cmae conmim] [--source DIR] [--data-root data/fashion_mnist]

One command, resumable (run it again after an interruption; finished steps are kept,
pretraining resumes from its newest intact checkpoint):

1. prepares the data (Debian package ``dataset-fashion-mnist``, installed with
   apt-get when missing and possible; otherwise the error says what to run);
2. baselines: weighted k-NN and the quick linear probe on raw pixels, and on each
   method's randomly initialised encoder (epoch 0);
3. pretrains each method with ``tools/train.py`` (configs/study/), whose
   ``KNNValLoop`` evaluates k-NN and the linear probe on the 10,000 test images after
   every epoch;
4. evaluates each method's last epoch again with all 60,000 training images as the
   k-NN bank and the linear probe's training set (the raw-pixel baseline's bank);
5. writes ``results.json``, ``results.md`` and ``knn_linear_vs_epoch.png`` to the work
   dir. docs/fashion_mnist_study.md describes the design and the measured results.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)  # fashion_mnist_data, also when loaded as a module
CONFIGS = {
    m:
    osp.join(REPO, 'configs', 'study',
             f'{m}_vit-tiny-p4_1xb128-5e_fashion-mnist-32px.py')
    for m in ('mae', 'cmae', 'conmim')
}
NAMES = {'mae': 'MAE', 'cmae': 'CMAE', 'conmim': 'ConMIM'}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/fashion_mnist_study')
    parser.add_argument(
        '--methods', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument('--data-root', default='data/fashion_mnist')
    parser.add_argument('--source', help='folder with the gzipped IDX files')
    return parser.parse_args()


def load_state(path: str) -> dict:
    if osp.isfile(path):
        with open(path) as f:
            return json.load(f)
    return {}


def save_state(state: dict, path: str) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, path)


def raw_pixel_baselines(data_root: str, per_class: int) -> dict:
    """k-NN (k=20, T=0.07) and linear probe on the 784 raw pixels."""
    import torch
    from fashion_mnist_data import read_idx  # tools/study/, beside

    from cmae_mm.evaluation import knn_accuracy, linear_probe_accuracy
    x = torch.from_numpy(
        read_idx(osp.join(data_root, 'train-images-idx3-ubyte')).reshape(
            60000, -1).astype(np.float32) / 255)
    y = torch.from_numpy(
        read_idx(osp.join(data_root, 'train-labels-idx1-ubyte')).astype(np.int64))
    xt = torch.from_numpy(
        read_idx(osp.join(data_root, 't10k-images-idx3-ubyte')).reshape(
            10000, -1).astype(np.float32) / 255)
    yt = torch.from_numpy(
        read_idx(osp.join(data_root, 't10k-labels-idx1-ubyte')).astype(np.int64))
    keep = torch.cat([torch.nonzero(y == c)[:per_class, 0] for c in range(10)])
    keep = keep.sort().values
    out = {}
    out['knn_bank'] = knn_accuracy(x[keep], y[keep], xt, yt, 10)
    out['knn_full'] = knn_accuracy(x, y, xt, yt, 10)
    out['linear_bank'] = linear_probe_accuracy(x[keep], y[keep], xt, yt, 10)
    out['linear_full'] = linear_probe_accuracy(x, y, xt, yt, 10)
    return out


def run(cmd: list, log: str) -> None:
    print('[study] $ ' + ' '.join(cmd), flush=True)
    with open(log, 'a') as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f'[study] failed (exit {done.returncode}): see {log}')


def checkpoints_by_epoch(method_dir: str) -> dict:
    """epoch (str) -> path of each ``epoch_N.pth`` in ``method_dir``."""
    return {
        osp.basename(c)[len('epoch_'):-len('.pth')]: c
        for c in glob.glob(osp.join(method_dir, 'epoch_*.pth'))
    }


def epoch_metrics(method_dir: str) -> dict:
    """epoch -> metrics, from the runs' scalars.json (the newest wins)."""
    out = {}
    for run_dir in sorted(os.listdir(method_dir)):
        path = osp.join(method_dir, run_dir, 'vis_data', 'scalars.json')
        if not osp.isfile(path):
            continue
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if 'knn/top1' in rec:
                    out[int(rec['step'])] = {
                        k: rec[k]
                        for k in ('knn/top1', 'knn/top5', 'linear/top1', 'linear/top5')
                        if k in rec
                    }
    return out


def knn_eval(config: str,
             checkpoint: str,
             out_dir: str,
             data_opt: list,
             log: str,
             extra_opt: tuple = ()) -> dict:
    """k-NN and linear probe of one checkpoint (or 'random') with the eval tool."""
    run([
        sys.executable, 'tools/analysis/knn_eval.py', config, checkpoint,
        '--linear-probe', '--work-dir', out_dir, '--cfg-options'
    ] + data_opt + list(extra_opt), log)
    with open(osp.join(out_dir, 'knn_metrics.json')) as f:
        metrics = json.load(f)['metrics']
    return {
        k: metrics[k]
        for k in ('knn/top1', 'knn/top5', 'linear/top1', 'linear/top5')
    }


def write_results(work_dir: str, state: dict, methods: list) -> None:
    results = dict(
        baselines=state.get('baselines', {}),
        methods={
            m:
            dict(
                config=osp.relpath(CONFIGS[m], REPO),
                wall_minutes=state.get(f'{m}_minutes'),
                epochs={
                    str(e): v
                    for e, v in sorted(
                        state.get(f'{m}_epochs', {}).items(), key=lambda kv: int(kv[0]))
                })
            for m in methods
        })
    base = results['baselines']
    lines = [
        '| method | epoch | k-NN top-1 | k-NN top-5 | linear top-1 | linear top-5 |',
        '|---|---|---|---|---|---|'
    ]
    for m in methods:
        for e, v in results['methods'][m]['epochs'].items():
            lines.append(f"| {NAMES[m]} | {e} | {v.get('knn/top1', 0):.2f} | "
                         f"{v.get('knn/top5', 0):.2f} | {v.get('linear/top1', 0):.2f} "
                         f"| {v.get('linear/top5', 0):.2f} |")
    lines += [
        '', '| method | epoch | bank of all 60,000: k-NN top-1 | k-NN top-5 | '
        'linear top-1 | linear top-5 |', '|---|---|---|---|---|---|'
    ]
    for m in methods:
        full = state.get(f'{m}_full_bank')
        if full:
            v = full['metrics']
            lines.append(f"| {NAMES[m]} | {full['epoch']} | {v['knn/top1']:.2f} | "
                         f"{v['knn/top5']:.2f} | {v['linear/top1']:.2f} | "
                         f"{v['linear/top5']:.2f} |")
    results['full_bank'] = {m: state.get(f'{m}_full_bank') for m in methods}
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=2)
    raw = base.get('raw_pixels', {})
    if raw:
        lines += [
            '', '| baseline | k-NN top-1 | linear top-1 |', '|---|---|---|',
            f"| raw pixels, bank of 5,000 | {raw['knn_bank']['top1']:.2f} | "
            f"{raw['linear_bank']['top1']:.2f} |",
            f"| raw pixels, bank of all 60,000 | {raw['knn_full']['top1']:.2f} | "
            f"{raw['linear_full']['top1']:.2f} |" if 'linear_full' in raw else
            f"| raw pixels, bank of all 60,000 | {raw['knn_full']['top1']:.2f} | - |"
        ]
    lines += ['', '| method | pretraining + evaluation wall time (min) |', '|---|---|']
    for m in methods:
        minutes = results['methods'][m]['wall_minutes']
        lines.append(
            f'| {NAMES[m]} | {minutes:.1f} |' if minutes else f'| {NAMES[m]} | - |')
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    plot(work_dir, results, methods)


def plot(work_dir: str, results: dict, methods: list) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    raw = results['baselines'].get('raw_pixels', {})
    for ax, key, title in ((axes[0], 'knn/top1', 'weighted k-NN top-1 (%)'),
                           (axes[1], 'linear/top1', 'linear probe top-1 (%)')):
        for m in methods:
            ep = results['methods'][m]['epochs']
            xs = [int(e) for e in ep]
            line, = ax.plot(xs, [ep[e][key] for e in ep], marker='o', label=NAMES[m])
            full = results.get('full_bank', {}).get(m)
            if full:  # the last epoch with the 60,000-image bank
                ax.plot([full['epoch']], [full['metrics'][key]],
                        marker='*',
                        ms=12,
                        ls='',
                        color=line.get_color(),
                        label=f'{NAMES[m]}, 60k bank')
        if raw:
            which = 'knn_bank' if key.startswith('knn') else 'linear_bank'
            ax.axhline(
                raw[which]['top1'], color='k', ls='--', label='raw pixels, 5k bank')
            full = raw.get('knn_full' if key.startswith('knn') else 'linear_full')
            if full:
                ax.axhline(
                    full['top1'], color='gray', ls=':', label='raw pixels, 60k bank')
        rnd = [results['methods'][m]['epochs'].get('0', {}).get(key) for m in methods]
        rnd = [r for r in rnd if r is not None]
        if rnd:
            ax.axhline(
                float(np.mean(rnd)), color='r', ls='-.', label='random init (mean)')
        ax.set_xlabel('epoch (125 updates of 128 images)')
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle('Fashion-MNIST test set (10,000 images), tiny ViT at 32 px')
    fig.tight_layout()
    fig.savefig(osp.join(work_dir, 'knn_linear_vs_epoch.png'), dpi=110)
    plt.close(fig)


def main() -> None:
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    args = parse_args()
    from fashion_mnist_data import prepare_fashion_mnist  # tools/study/, beside
    work_dir = osp.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    state_path = osp.join(work_dir, 'state.json')
    state = load_state(state_path)
    data_root = osp.join(
        REPO, args.data_root) if not osp.isabs(args.data_root) else args.data_root
    try:
        counts = prepare_fashion_mnist(data_root, args.source)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'[study] {e}')
    print(f'[study] data ready in {data_root}: {counts}', flush=True)
    data_opt = [
        f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        f'val_cfg.bank_dataloader.dataset.data_root={data_root}'
    ]
    python = sys.executable
    if 'baselines' not in state:
        start = time.time()
        state['baselines'] = {'raw_pixels': raw_pixel_baselines(data_root, 500)}
        state['baselines']['raw_pixels']['seconds'] = time.time() - start
        save_state(state, state_path)
    print(f"[study] raw pixels: {state['baselines']['raw_pixels']}", flush=True)
    for m in args.methods:
        method_dir = osp.join(work_dir, m)
        os.makedirs(method_dir, exist_ok=True)
        log = osp.join(work_dir, f'{m}.log')
        epochs = state.setdefault(f'{m}_epochs', {})
        if '0' not in epochs:  # random initialisation
            epochs['0'] = knn_eval(CONFIGS[m], 'random',
                                   osp.join(work_dir, f'{m}_random_init'), data_opt,
                                   log)
            save_state(state, state_path)
        if not state.get(f'{m}_done'):
            start = time.time()
            run([
                python, 'tools/train.py', CONFIGS[m], '--work-dir', method_dir,
                '--resume', '--cfg-options'
            ] + data_opt, log)
            state[f'{m}_minutes'] = state.get(f'{m}_minutes',
                                              0) + (time.time() - start) / 60
            state[f'{m}_done'] = True
        epochs.update({str(e): v for e, v in epoch_metrics(method_dir).items()})
        # a run stopped between a checkpoint and its validation (or resumed after
        # its last epoch) leaves that epoch unevaluated: evaluate its checkpoint
        for epoch, ckpt in sorted(checkpoints_by_epoch(method_dir).items()):
            if epoch not in epochs:
                print(
                    f'[study] {NAMES[m]} epoch {epoch} has no evaluation in the '
                    f'training log: evaluating {ckpt}',
                    flush=True)
                epochs[epoch] = knn_eval(CONFIGS[m], ckpt,
                                         osp.join(method_dir, f'eval_epoch_{epoch}'),
                                         data_opt, log)
        save_state(state, state_path)
        write_results(work_dir, state, [x for x in args.methods if x in CONFIGS])
        print(f'[study] {NAMES[m]}: {epochs}', flush=True)
    # the last epoch of each method against the whole training set as the bank
    # (the raw-pixel baseline's 60,000-image bank)
    for m in args.methods:
        ckpts = checkpoints_by_epoch(osp.join(work_dir, m))
        if not ckpts or f'{m}_full_bank' in state:
            continue
        epoch = max(ckpts, key=int)
        last = ckpts[epoch]
        print(
            f'[study] {NAMES[m]} epoch {epoch}: k-NN and linear probe with the '
            'whole training set (60,000 images) as the bank',
            flush=True)
        metrics = knn_eval(CONFIGS[m], last, osp.join(work_dir, m,
                                                      'eval_full_bank'), data_opt,
                           osp.join(work_dir, f'{m}.log'),
                           ('val_cfg.bank_per_class=None', ))
        state[f'{m}_full_bank'] = dict(epoch=int(epoch), metrics=metrics)
        save_state(state, state_path)
    write_results(work_dir, state, args.methods)
    print(f'[study] results: {osp.join(work_dir, "results.md")}', flush=True)


if __name__ == '__main__':
    main()
