"""CPU demo: pretrain the tiny CMAE on the photographs that ship inside scikit-image.

    python tools/demo.py [--work-dir work_dirs/demo] [--iters N]

Runs MMEngine's Runner with configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py
(same algorithm,
views and masking as the ViT-B recipe, tiny sizes), then writes into the work dir:

- ``iter_<N>.pth``: the checkpoint (online encoder ``backbone.*``, target encoder
  ``target_encoder.module.0.*``, ...);
- ``cmae_demo_reconstruction.png``: rows original / masked input (68 of 196 patches
  visible) / reconstruction, for the photographs it trained on;

and prints the start and end values of ``loss_rc`` and ``loss_ct``. About 3-6 minutes on
2 CPU cores. Nine photographs are far too few to learn general features: the demo
shows that the pipeline trains end to end, not a useful encoder.
"""
import argparse
import os
import os.path as osp
import sys
import time

import numpy as np

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = osp.join(REPO_ROOT, 'configs', 'pretrain',
                          'cmae_vit-tiny-p16_1xb8-800iter_demo.py')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--work-dir',
        default='work_dirs/demo',
        help='where the photos, logs, checkpoint and figure go')
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument(
        '--iters',
        type=int,
        default=None,
        help="training iterations (default: the config's)")
    parser.add_argument(
        '--max-minutes',
        type=float,
        default=5.0,
        help='stop training early after this many minutes (slow '
        'or busy machines); the checkpoint is still written')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def time_budget_hook(minutes: float):
    """A hook that ends training once ``minutes`` of training have passed."""
    from mmengine.hooks import Hook

    class TimeBudgetHook(Hook):
        priority = 'VERY_LOW'

        def before_train(self, runner) -> None:
            self.start = time.time()

        def after_train_iter(self,
                             runner,
                             batch_idx,
                             data_batch=None,
                             outputs=None) -> None:
            if time.time() - self.start > minutes * 60:
                runner.logger.info(f'[demo] time budget of {minutes} min reached '
                                   f'after {runner.iter + 1} iterations; stopping.')
                runner.train_loop.stop_training = True

    return TimeBudgetHook()


def make_figure(model, out_path: str, seed: int = 0) -> str:
    """Rows original / masked / reconstruction for the bundled photographs."""
    from cmae_mm.testing import load_photos
    from cmae_mm.visualization import center_crop, reconstruction_figure

    size = model.backbone.img_size[0]
    imgs = np.stack([center_crop(p, size) for p in load_photos().values()])  # RGB
    vis = model.backbone.num_visible
    total = model.backbone.num_patches
    unit = model.backbone.mask_unit_size
    title = (f'CMAE tiny demo: {vis}/{total} patches visible ({unit}x{unit}'
             f'-patch units); reconstruction = predicted masked patches '
             f'(de-normalised with each patch\'s own mean/std, as MAE) + visible ones')
    return reconstruction_figure(model, imgs, out_path, title, seed)


def main() -> None:
    # Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine,
    # spinning threads made training 4x slower here. Must precede importing torch.
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    args = parse_args()
    sys.path.insert(0, REPO_ROOT)
    from mmengine.config import Config

    import cmae_mm  # noqa: F401  (registers the modules)
    from cmae_mm.engine.runner import CheckedRunner
    from cmae_mm.testing import write_photo_folder

    work_dir = osp.abspath(args.work_dir)
    photo_dir = osp.join(work_dir, 'photos')
    paths = write_photo_folder(photo_dir)
    print(f'[demo] {len(paths)} photographs from scikit-image -> {photo_dir}')

    cfg = Config.fromfile(args.config)
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    cfg.randomness = dict(seed=args.seed, diff_rank_seed=True)
    cfg.train_dataloader.dataset.data_root = photo_dir
    if args.iters is not None:
        cfg.train_cfg.max_iters = args.iters
    max_iters = cfg.train_cfg.max_iters
    cfg.default_hooks.checkpoint.interval = max_iters

    start = time.time()
    runner = CheckedRunner.from_cfg(cfg)
    runner.register_hook(time_budget_hook(args.max_minutes))
    runner.train()
    minutes = (time.time() - start) / 60
    done = runner.iter
    ckpt = osp.join(work_dir, f'iter_{done}.pth')
    if not osp.isfile(ckpt):  # stopped early by the time budget
        runner.save_checkpoint(work_dir, f'iter_{done}.pth')

    hub = runner.message_hub
    print(f'[demo] {done} iterations in {minutes:.1f} min')
    k = max(1, min(10, done // 5))
    for key in ('loss_rc', 'loss_ct'):
        values = hub.get_scalar(f'train/{key}').data[0]
        first, last = float(np.mean(values[:k])), float(np.mean(values[-k:]))
        trend = 'fell' if last < first else 'DID NOT FALL'
        print(f'[demo] {key}: start {first:.4f} (mean of first {k} iters) -> '
              f'end {last:.4f} (mean of last {k}): {trend}')

    fig = make_figure(
        runner.model,
        osp.join(work_dir, 'cmae_demo_reconstruction.png'),
        seed=args.seed)
    print(f'[demo] checkpoint: {ckpt}' + ('' if osp.isfile(ckpt) else ' (MISSING)'))
    print(f'[demo] figure:     {fig}')


if __name__ == '__main__':
    main()
