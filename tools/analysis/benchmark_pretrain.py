"""CPU time per training iteration and FLOPs of pretraining configs, side by side.

    python tools/analysis/benchmark_pretrain.py CONFIG [CONFIG ...] [--batch 8]
        [--iters 3] [--warmup 1] [--threads N] [--cfg-options k=v ...]

For each config: build its model (SyncBN -> BN, fp32 ``OptimWrapper`` with the config's
optimizer), build one batch by running the config's own training pipeline on the
photographs bundled with scikit-image (so any pretraining algorithm gets the inputs it
expects: one view for MAE, two for CMAE, ...), then

- FLOPs of one forward (``mode='loss'``) and of forward + backward, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (matmul / conv / attention ops; one
  multiply-add = 2 FLOPs);
- seconds per training iteration on the CPU: ``model.train_step`` = data
  preprocessor, forward, backward and optimizer step, timed after ``--warmup``
  iterations, median of ``--iters``; wall clock and process CPU time (all threads,
  less sensitive to other load on a shared machine).

All configs run at the same batch in one process, so their numbers compare directly.
"""
import argparse
import os
import os.path as osp
import statistics
import sys
import tempfile
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args() -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='+', help='pretraining config files')
    parser.add_argument('--batch', type=int, default=8, help='images per batch')
    parser.add_argument(
        '--iters', type=int, default=3, help='timed iterations (median reported)')
    parser.add_argument(
        '--warmup', type=int, default=1, help='untimed iterations first')
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='torch CPU threads (default: torch default)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='overrides applied to every config')
    return parser.parse_args()


def build_batch(cfg, batch: int, photo_dir: str) -> dict:
    """One collated batch from the config's own training pipeline."""
    import numpy as np
    from mmengine.dataset import Compose, default_collate
    from mmengine.registry import TRANSFORMS

    from cmae_mm.testing import PHOTO_FILES
    pipeline = Compose(
        [TRANSFORMS.build(t) for t in cfg.train_dataloader.dataset.pipeline])
    files = [osp.join(photo_dir, f'{name}.jpg') for name in PHOTO_FILES]
    np.random.seed(0)
    items = []
    for i in range(batch):
        items.append(pipeline(dict(img_path=files[i % len(files)], sample_idx=i)))
    return default_collate(items)


def count_flops(model, data: dict):
    """(forward FLOPs, forward + backward FLOPs) of one ``mode='loss'`` pass."""
    from torch.utils.flop_counter import FlopCounterMode
    model.zero_grad(set_to_none=True)
    processed = model.data_preprocessor(data, True)
    with FlopCounterMode(display=False) as fwd:
        losses = model(**processed, mode='loss')
    loss, _ = model.parse_losses(losses)
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    model.zero_grad(set_to_none=True)
    return fwd.get_total_flops(), fwd.get_total_flops() + bwd.get_total_flops()


def benchmark(path: str, args, photo_dir: str) -> dict:
    import torch
    from mmengine.config import Config
    from mmengine.logging import MessageHub
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope, init_default_scope
    from mmpretrain.registry import MODELS

    cfg = Config.fromfile(path)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        torch.manual_seed(args.seed)
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
        model.init_weights()
        model.train()
        optim_cfg = dict(cfg.optim_wrapper)
        optim_cfg['type'] = 'OptimWrapper'  # fp32 on CPU (AMP needs a GPU)
        optim_cfg.pop('loss_scale', None)
        optim_wrapper = build_optim_wrapper(model, optim_cfg)
        data = build_batch(cfg, args.batch, photo_dir)
    MessageHub.get_current_instance().update_info('max_iters', 10**6)
    MessageHub.get_current_instance().update_info('iter', 0)

    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flops_fwd, flops_train = count_flops(model, data)

    times, cpu_times = [], []
    for i in range(args.warmup + args.iters):
        t0, c0 = time.perf_counter(), time.process_time()
        model.train_step(data, optim_wrapper)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if i >= args.warmup:
            times.append(dt)
            cpu_times.append(dc)
    return dict(
        config=osp.relpath(path, REPO_ROOT) if path.startswith(REPO_ROOT) else path,
        algorithm=type(model).__name__,
        params_m=n_params / 1e6,
        trainable_m=n_train / 1e6,
        gflops_fwd=flops_fwd / 1e9 / args.batch,
        gflops_train=flops_train / 1e9 / args.batch,
        sec_per_iter=statistics.median(times),
        cpu_sec_per_iter=statistics.median(cpu_times),
        times=times)


def main() -> None:
    # Idle OpenMP threads sleep instead of spinning (stable timings on a shared
    # CPU); must precede importing torch. Override by setting OMP_WAIT_POLICY.
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    sys.path.insert(0, REPO_ROOT)
    args = parse_args()
    import torch

    import cmae_mm  # noqa: F401
    from cmae_mm.testing import write_photo_folder
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as photo_dir:
        write_photo_folder(photo_dir)
        for path in args.configs:
            print(f'[benchmark] {path} ...', flush=True)
            rows.append(benchmark(osp.abspath(path), args, photo_dir))
    print(f'\nbatch {args.batch}, torch {torch.__version__}, OMP_WAIT_POLICY='
          f'{os.environ["OMP_WAIT_POLICY"]}, '
          f'{torch.get_num_threads()} CPU threads, fp32; time = median of '
          f'{args.iters} train_step (fwd + bwd + optimizer step) after '
          f'{args.warmup} warm-up (wall clock, and CPU time of all threads); '
          f'FLOPs per image (FlopCounterMode, 1 MAC = 2 FLOPs)')
    header = (f'{"config":44s} {"algorithm":10s} {"params(M)":>10s} '
              f'{"trainable(M)":>12s} {"GFLOPs fwd/img":>15s} '
              f'{"GFLOPs fwd+bwd/img":>19s} {"wall s/iter":>12s} '
              f'{"CPU s/iter":>11s}')
    print(header)
    print('-' * len(header))
    for r in rows:
        print(f'{r["config"]:44s} {r["algorithm"]:10s} {r["params_m"]:10.1f} '
              f'{r["trainable_m"]:12.1f} {r["gflops_fwd"]:15.2f} '
              f'{r["gflops_train"]:19.2f} {r["sec_per_iter"]:12.3f} '
              f'{r["cpu_sec_per_iter"]:11.3f}')
    if len(rows) > 1:
        base = rows[-1]
        print(f'\nrelative to {base["config"]}:')
        for r in rows[:-1]:
            t = r['sec_per_iter'] / base['sec_per_iter']
            f = r['gflops_train'] / base['gflops_train']
            print(f'  {r["config"]}: time x{t:.2f}, fwd+bwd FLOPs x{f:.2f}')


if __name__ == '__main__':
    main()
