"""The transfer study: scratch vs MAE, CMAE and ConMIM encoders on Fashion-MNIST
fine-tuning and linear probing, and on detection and segmentation of Fashion-MNIST
scenes (docs/transfer_study.md).

    python tools/study/transfer_study.py [--work-dir work_dirs/transfer_study]
        [--jobs 2] [--parts finetune linear det seg] [--pretrain-dir DIR]

One command, resumable (run it again after an interruption: a finished run is kept
with its ``result.json``, an interrupted one resumes from its newest checkpoint):

1. prepares Fashion-MNIST (tools/study/fashion_mnist_data.py) and the scenes built
   from it (tools/study/fashion_mnist_scenes.py);
2. pretrains MAE, CMAE and ConMIM with the Fashion-MNIST study's configs
   (configs/study/, 5 epochs; one k-NN evaluation at the end) unless their
   ``epoch_5.pth`` is in ``--pretrain-dir`` (e.g. the study's work dir);
3. runs every transfer config with ``tools/train.py`` and evaluates its last
   checkpoint with ``tools/test.py``: fine-tuning (seeds 0 and 1) and linear probing
   on Fashion-MNIST, Mask R-CNN and UperNet on the scenes, each from scratch and from
   each pretrained encoder; ``--jobs`` runs at once, one thread each;
4. writes ``results.json``, ``results.md`` and ``transfer.png`` to the work dir.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, NamedTuple

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, HERE)  # the study's tools, beside

from fashion_mnist_study import CONFIGS as PRETRAIN_CONFIGS  # noqa: E402
from fashion_mnist_study import NAMES, load_state, run, save_state  # noqa: E402

ENCODERS = ('scratch', 'mae', 'cmae', 'conmim')
LABELS = dict(NAMES, scratch='scratch')  # table and figure labels
PRETRAIN_EPOCHS = 5
#: part -> (configs/ path per architecture: 'vit' scratch/MAE/CMAE, 'beit' ConMIM;
#: the metrics kept from tools/test.py's metrics.json; seeds)
PARTS = {
    'finetune': ('cls/{}_vit-tiny-p4_1xb128-coslr-5e_fashion-mnist-32px.py',
                 ('accuracy/top1', ), (0, 1)),
    'linear': ('cls/{}_vit-tiny-p4_1xb128-linear-coslr-10e_fashion-mnist-32px.py',
               ('accuracy/top1', ), (0, )),
    'det': ('det/{}_vit-tiny-p4_{}1xb8-lsj-300iter_fashion-mnist-scenes.py',
            ('coco/bbox_mAP', 'coco/segm_mAP'), (0, )),
    'seg': ('seg/{}_vit-tiny-p4_upernet_1xb8-300iter_fashion-mnist-scenes-96x96.py',
            ('mIoU', ), (0, )),
}
#: table columns: (part, metric, header)
COLUMNS = (('finetune', 'accuracy/top1', 'fine-tune top-1'), ('linear', 'accuracy/top1',
                                                              'linear top-1'),
           ('det', 'coco/bbox_mAP', 'box AP'), ('det', 'coco/segm_mAP',
                                                'mask AP'), ('seg', 'mIoU', 'mIoU'))


class Run(NamedTuple):
    """One training + test run of the study."""
    part: str
    encoder: str
    seed: int
    config: str  # relative to the repository

    @property
    def name(self) -> str:
        return f'{self.part}_{self.encoder}_seed{self.seed}'


def config_of(part: str, encoder: str) -> str:
    """The transfer config of ``part`` for ``encoder``: ConMIM's BEiT-style encoder
    has its own configs, scratch / MAE / CMAE share the CMAE ones."""
    arch = 'conmim' if encoder == 'conmim' else 'cmae'
    pattern = PARTS[part][0]
    if part == 'det':  # ViTDet's windowed blocks for the ViT; ConMIM keeps global
        return 'configs/' + pattern.format(
            arch, 'vitdet-mask-rcnn_' if arch == 'cmae' else 'mask-rcnn_')
    return 'configs/' + pattern.format(arch)


def plan(parts: List[str], encoders: List[str]) -> List[Run]:
    return [
        Run(part, enc, seed, config_of(part, enc)) for part in parts for enc in encoders
        for seed in PARTS[part][2]
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/transfer_study')
    parser.add_argument('--parts', nargs='+', default=list(PARTS), choices=list(PARTS))
    parser.add_argument(
        '--encoders', nargs='+', default=list(ENCODERS), choices=list(ENCODERS))
    parser.add_argument(
        '--pretrain-dir',
        help='folder with {mae,cmae,conmim}/epoch_5.pth (e.g. the Fashion-MNIST '
        "study's work dir); default: WORK_DIR/pretrain, pretrained when missing")
    parser.add_argument('--jobs', type=int, default=2, help='runs at once')
    parser.add_argument('--data-root', default='data/fashion_mnist')
    parser.add_argument('--scenes-root', default='data/fashion_mnist_scenes')
    parser.add_argument('--source', help='folder with the gzipped IDX files')
    return parser.parse_args()


def pretrain(method: str, pretrain_dir: str, data_root: str) -> str:
    """The method's study checkpoint after 5 epochs, pretrained when missing."""
    out = osp.join(pretrain_dir, method)
    ckpt = osp.join(out, f'epoch_{PRETRAIN_EPOCHS}.pth')
    if not osp.isfile(ckpt):
        os.makedirs(out, exist_ok=True)
        run([
            sys.executable, 'tools/train.py', PRETRAIN_CONFIGS[method], '--work-dir',
            out, '--resume', '--cfg-options',
            f'train_dataloader.dataset.data_root={data_root}',
            f'val_dataloader.dataset.data_root={data_root}',
            f'val_cfg.bank_dataloader.dataset.data_root={data_root}',
            f'train_cfg.val_interval={PRETRAIN_EPOCHS}'
        ], osp.join(pretrain_dir, f'{method}.log'))
    return ckpt


def run_options(r: Run, ckpt: str, data_root: str, scenes_root: str) -> List[str]:
    """``--cfg-options`` of a run: seed, checkpoint (scratch: no init) and data."""
    opts = [f'randomness.seed={r.seed}']
    opts.append('model.backbone.init_cfg=None' if r.encoder ==
                'scratch' else f'model.backbone.init_cfg.checkpoint={ckpt}')
    if r.part in ('finetune', 'linear'):
        opts += [
            f'{loader}.dataset.data_root={data_root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        ]
    else:
        root = scenes_root.rstrip('/') + '/'
        opts += [
            f'{loader}.dataset.data_root={root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        ]
        if r.part == 'det':
            ann = root + 'annotations/instances_validation.json'
            opts += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']
    return opts


def last_checkpoint(run_dir: str) -> str:
    with open(osp.join(run_dir, 'last_checkpoint')) as f:
        path = f.read().strip()
    return path if osp.isabs(path) else osp.join(run_dir, path)


def train_and_test(r: Run, work_dir: str, ckpts: Dict[str, str], data_root: str,
                   scenes_root: str) -> dict:
    """Train and test one run (or read its finished result)."""
    run_dir = osp.join(work_dir, 'runs', r.name)
    result_path = osp.join(run_dir, 'result.json')
    if osp.isfile(result_path):
        with open(result_path) as f:
            return json.load(f)
    os.makedirs(run_dir, exist_ok=True)
    opts = run_options(r, ckpts.get(r.encoder), data_root, scenes_root)
    log = osp.join(run_dir, 'run.log')
    start = time.time()
    run([
        sys.executable, 'tools/train.py', r.config, '--work-dir', run_dir, '--resume',
        '--precision', 'fp32', '--no-validate', '--cfg-options'
    ] + opts, log)
    trained = time.time()
    test_dir = osp.join(run_dir, 'test')
    run([
        sys.executable, 'tools/test.py', r.config,
        last_checkpoint(run_dir), '--work-dir', test_dir, '--cfg-options'
    ] + opts, log)
    with open(osp.join(test_dir, 'metrics.json')) as f:
        metrics = json.load(f)
    result = dict(
        r._asdict(),
        checkpoint=ckpts.get(r.encoder),
        metrics={
            k: float(metrics[k]) * (100 if r.part == 'det' else 1)
            for k in PARTS[r.part][1]
        },
        train_minutes=(trained - start) / 60,
        test_minutes=(time.time() - trained) / 60)
    save_state(result, result_path)
    print(f'[transfer] {r.name}: {result["metrics"]}', flush=True)
    return result


def summarise(results: List[dict], encoders: List[str]) -> dict:
    """encoder -> column header -> dict(mean, values)."""
    table = {}
    for enc in encoders:
        row = {}
        for part, metric, header in COLUMNS:
            vals = [
                r['metrics'][metric] for r in results
                if r['encoder'] == enc and r['part'] == part
            ]
            if vals:
                row[header] = dict(mean=float(np.mean(vals)), values=vals)
        table[enc] = row
    return table


def write_results(work_dir: str, results: List[dict], encoders: List[str]) -> None:
    table = summarise(results, encoders)
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(dict(table=table, runs=results), f, indent=2)
    headers = [h for _, _, h in COLUMNS]
    lines = [
        '| encoder | ' + ' | '.join(headers) + ' |', '|---' * (len(headers) + 1) + '|'
    ]
    for enc in encoders:
        cells = []
        for h in headers:
            cell = table[enc].get(h)
            if cell is None:
                cells.append('-')
            elif len(cell['values']) > 1:
                vals = ', '.join(f'{v:.2f}' for v in cell['values'])
                cells.append(f"{cell['mean']:.2f} ({vals})")
            else:
                cells.append(f"{cell['mean']:.2f}")
        lines.append(f'| {LABELS[enc]} | ' + ' | '.join(cells) + ' |')
    lines += ['', '| run | train (min) | test (min) |', '|---|---|---|']
    lines += [
        f"| {r['part']} {LABELS[r['encoder']]} seed {r['seed']} | "
        f"{r['train_minutes']:.1f} | {r['test_minutes']:.1f} |" for r in results
    ]
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    plot(work_dir, table, encoders)


def plot(work_dir: str, table: dict, encoders: List[str]) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    # the measured columns only
    headers = [h for _, _, h in COLUMNS if any(table[e].get(h) for e in encoders)]
    if not headers:
        return
    fig, axes = plt.subplots(
        1, len(headers), figsize=(3 * len(headers), 3.2), squeeze=False)
    for ax, h in zip(axes[0], headers):
        for i, enc in enumerate(encoders):
            cell = table[enc].get(h)
            if cell is None:
                continue
            ax.bar(i, cell['mean'], color=f'C{i}')
            ax.plot([i] * len(cell['values']), cell['values'], 'k.', ms=4)
        ax.set_xticks(range(len(encoders)), [LABELS[e] for e in encoders], rotation=30)
        ax.set_title(h)
        ax.grid(axis='y', alpha=0.3)
    fig.suptitle('Transfer of the tiny ViTs (Fashion-MNIST test items)')
    fig.tight_layout()
    fig.savefig(osp.join(work_dir, 'transfer.png'), dpi=110)
    plt.close(fig)


def main() -> None:
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    args = parse_args()
    from fashion_mnist_data import prepare_fashion_mnist
    from fashion_mnist_scenes import prepare_scenes
    work_dir = osp.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    data_root, scenes_root = (
        p if osp.isabs(p) else osp.join(REPO, p)
        for p in (args.data_root, args.scenes_root))
    try:
        prepare_fashion_mnist(data_root, args.source)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'[transfer] {e}')
    if {'det', 'seg'} & set(args.parts):
        print(
            f'[transfer] scenes: {prepare_scenes(data_root, scenes_root)}', flush=True)
    pretrain_dir = osp.abspath(args.pretrain_dir or osp.join(work_dir, 'pretrain'))
    ckpts = {
        m: pretrain(m, pretrain_dir, data_root)
        for m in args.encoders if m != 'scratch'
    }
    runs = plan(args.parts, args.encoders)
    state_path = osp.join(work_dir, 'state.json')
    state = load_state(state_path)
    state.update(pretrained=ckpts, planned=[r.name for r in runs])
    save_state(state, state_path)
    # one thread per run when several run at once
    env_threads = '1' if args.jobs > 1 else os.environ.get('OMP_NUM_THREADS', '')
    if env_threads:
        os.environ['OMP_NUM_THREADS'] = env_threads
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(train_and_test, r, work_dir, ckpts, data_root, scenes_root)
            for r in runs
        ]
        results = []
        for r, fut in zip(runs, futures):
            try:
                results.append(fut.result())
            except (SystemExit, subprocess.CalledProcessError) as e:
                print(f'[transfer] {r.name} failed: {e}', flush=True)
    write_results(work_dir, results, args.encoders)
    missing = len(runs) - len(results)
    print(
        f'[transfer] results: {osp.join(work_dir, "results.md")}' +
        (f'; {missing} runs failed (run the command again)' if missing else ''),
        flush=True)
    if missing:
        raise SystemExit(1)


if __name__ == '__main__':
    main()
