"""Test (evaluate) a checkpoint with an MMPretrain, MMSegmentation or MMDetection
config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE] [--amp]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm|mpi]
        [--device auto|cuda|cpu]

Prints the metrics and writes them (JSON) to WORK_DIR/metrics.json. The runner is the
config's ``runner_type`` (``CheckedRunner`` in every config here; MMEngine's ``Runner``
where a config names none), built without the config's training parts. The
checkpoint is loaded strictly (``CheckedLoadHook``): one of another model or with
NaN / inf tensors stops the test, naming the keys, both models and the tensors.
``mim test cmae_mm CONFIG --checkpoint CKPT`` runs this script.
"""
import argparse
import json
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.evaluator import DumpResults
from mmengine.registry import RUNNERS

import cmae_mm  # noqa: F401  (registers every module)
from cmae_mm.engine.checkpoint import (CheckedLoadHook, CheckpointError,
                                       verify_checkpoint)
from cmae_mm.engine.cuda_check import DEVICES
from cmae_mm.engine.launch import finish_launch, prepare_launch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='dir for logs and metrics.json')
    parser.add_argument('--out', help='dump raw predictions to this pickle file')
    parser.add_argument('--amp', action='store_true', help='fp16 test (GPU)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. test_dataloader.batch_size=1')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--device',
        choices=DEVICES,
        help='cuda / cpu / auto, as in tools/train.py (docs/training.md)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def without_training(cfg: Config) -> Config:
    """``cfg`` with its training parts removed: evaluation needs none of them, and
    without a training loop the config's ``runner_type`` (``CheckedRunner`` here) takes
    no work-dir lock, so a checkpoint can be tested while its run trains."""
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler'):
        cfg[key] = None
    return cfg


def main() -> None:
    args = parse_args()
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'{args.checkpoint}: no such checkpoint file.')
    reason = verify_checkpoint(args.checkpoint)
    if reason is not None:
        raise SystemExit(
            f'not a usable PyTorch checkpoint: {args.checkpoint}: {reason}.')
    cfg = Config.fromfile(args.config)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.amp:
        cfg.setdefault('test_cfg', {})['fp16'] = True
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg = prepare_launch(cfg, args.launcher, args.device)

    runner = RUNNERS.build(without_training(cfg))
    # MMEngine's load_from is non-strict: the checkpoint must be this model's
    runner.register_hook(CheckedLoadHook(), 'HIGHEST')
    if args.out is not None:
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    try:
        metrics = runner.test()
    except CheckpointError as e:
        finish_launch()
        raise SystemExit(f'[test] {e}')
    finish_launch()
    if runner.rank == 0:
        os.makedirs(cfg.work_dir, exist_ok=True)
        with open(osp.join(cfg.work_dir, 'metrics.json'), 'w') as f:
            json.dump(metrics, f, indent=2, default=float)


if __name__ == '__main__':
    main()
