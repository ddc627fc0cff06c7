"""Train a model from an MMPretrain, MMSegmentation or MMDetection config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [PATH]] [--overwrite]
        [--accept-foreign-checkpoint]
        [--amp] [--precision auto|fp32|fp16|bf16] [--auto-scale-lr] [--compile-blocks]
        [--augment-on device|cpu]
        [--cfg-options KEY=VALUE ...]
        [--launcher none|pytorch|slurm|mpi] [--device auto|cuda|cpu]

cmae_mm is imported whatever the config says, so its modules are always registered.
Training runs on the config's ``runner_type``, ``CheckedRunner``
(cmae_mm/engine/runner.py: MMEngine's Runner with the checks of docs/reliability.md),
which every runtime base here names and which is set where a config names none; the
flags below are merged into the config before the runner is built. A work dir that
holds checkpoints is only used with --resume (continue) or --overwrite (start anew);
--resume refuses a checkpoint of another run or another model config (its run
fingerprint, docs/reliability.md) unless --accept-foreign-checkpoint is given.
``mim train cmae_mm CONFIG [FLAGS]`` runs this script with the same flags.
--auto-scale-lr: the lr is scaled by global batch / ``auto_scale_lr.base_batch_size``
(MMEngine's ``Runner.scale_lr``); off unless given (docs/training.md).
The same config runs on GPUs (NCCL) and on CPUs (gloo); see cmae_mm/engine/launch.py.
Precision: ``MixedPrecisionOptimWrapper`` (cmae_mm/engine/optimizers) chooses float16
+ loss scaling on GPUs, bfloat16 on CPUs; --amp turns a config's ``OptimWrapper`` /
``AmpOptimWrapper`` into it, --precision sets it explicitly (docs/training.md).
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS

import cmae_mm  # noqa: F401  (registers every module)
from cmae_mm.engine.checkpoint import checkpoint_candidates
from cmae_mm.engine.cuda_check import DEVICES
from cmae_mm.engine.launch import finish_launch, prepare_launch
from cmae_mm.engine.optimizers import PRECISIONS, set_precision
from cmae_mm.engine.runner import CheckedRunner
from cmae_mm.models.data_preprocessors import select_train_pipeline


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or, with no value, from the newest '
        'intact checkpoint in the work dir (none there: start from scratch)')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='start a new run in a work dir that already holds checkpoints (they may '
        'be overwritten); without it such a run is refused')
    parser.add_argument(
        '--accept-foreign-checkpoint',
        action='store_true',
        help='with --resume: continue from a checkpoint whose run fingerprint names '
        'another run (run id, seed) or another model config, with a warning naming '
        'the mismatch; without it such a resume is refused before training. A '
        'checkpoint whose tensors do not fit the model is refused either way')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision chosen by device: optim_wrapper becomes '
        "MixedPrecisionOptimWrapper(dtype='auto'): float16 + dynamic loss scaling on "
        'GPUs, bfloat16 on CPUs')
    parser.add_argument(
        '--precision',
        choices=sorted(PRECISIONS),
        help='explicit precision, applied after --amp and --cfg-options: auto (as '
        '--amp), fp16, bf16 (MixedPrecisionOptimWrapper with that dtype) or fp32 '
        '(plain OptimWrapper; loss_scale / dtype keys dropped)')
    parser.add_argument(
        '--no-validate', action='store_true', help='do not evaluate during training')
    parser.add_argument(
        '--compile-blocks',
        action='store_true',
        help='torch.compile every transformer block in place (compile_blocks=True; '
        'a dict of torch.compile kwargs through --cfg-options; '
        'docs/performance.md, "Compiled blocks")')
    parser.add_argument(
        '--augment-on',
        choices=['device', 'cpu'],
        help='where the pretraining augmentation runs: device (the config\'s '
        'train_pipeline; the views are made batched in the data preprocessor) or cpu '
        '(its cpu_train_pipeline: all of it in the DataLoader workers); default: the '
        'pipeline the config names (docs/performance.md, "Augmentation on the device")')
    parser.add_argument(
        '--tensorboard',
        action='store_true',
        help='also log losses and metrics to TensorBoard (WORK_DIR/<run>/vis_data; '
        'needs the [tensorboard] extra)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by the global batch (GPUs x train_dataloader.batch_size) '
        '/ auto_scale_lr.base_batch_size, the batch the config\'s lr is set for; off '
        'by default (docs/training.md, "Learning rate and batch")')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. train_dataloader.batch_size=64')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--device',
        choices=DEVICES,
        help='cuda: the run needs GPUs and stops at once, naming cause and fix, where '
        'CUDA is unusable; cpu: run on the CPUs even on a GPU node; auto (default, or '
        '$CMAE_MM_DEVICE): such a stop only where GPUs are present or allotted '
        '(docs/training.md, "GPU machines")')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    if args.tensorboard:
        backends = cfg.visualizer.setdefault('vis_backends', [])
        if not any(b.get('type') == 'TensorboardVisBackend' for b in backends):
            backends.append(dict(type='TensorboardVisBackend'))
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        set_precision(cfg, 'amp', '--amp')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume {args.resume}: no such checkpoint file.')
        cfg.resume, cfg.load_from = True, args.resume
    if args.accept_foreign_checkpoint:
        if args.resume is None:
            raise SystemExit('--accept-foreign-checkpoint only applies to a resume: '
                             'add --resume [PATH], or drop the flag.')
        cfg.accept_foreign_checkpoint = True
    if args.auto_scale_lr:  # opt-in, as OpenMMLab's tools/train.py
        if not (cfg.get('auto_scale_lr') or {}).get('base_batch_size'):
            raise KeyError(
                f'--auto-scale-lr needs `auto_scale_lr = dict(base_batch_size=N)` in '
                f'the config: N is the global batch its lr is set for '
                f'(docs/training.md, "Learning rate and batch"); '
                f'{osp.basename(args.config)} has none.')
        cfg.auto_scale_lr.enable = True
    if args.compile_blocks:  # before --cfg-options, which may give kwargs instead
        cfg.compile_blocks = True
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.no_validate:  # after --cfg-options, which may set the validation data
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.augment_on is not None:  # after --cfg-options (which may set the data)
        select_train_pipeline(cfg, args.augment_on)
    if args.precision is not None:
        set_precision(cfg, args.precision, f'--precision {args.precision}')
    check_work_dir(cfg, args)
    return prepare_launch(cfg, args.launcher, args.device)


def check_work_dir(cfg: Config, args: argparse.Namespace) -> None:
    """Refuse to start a new run over the checkpoints of another one."""
    if cfg.get('resume') or args.overwrite:
        return
    existing = checkpoint_candidates(cfg.work_dir)
    if existing:
        raise SystemExit(
            f'{cfg.work_dir} already holds checkpoints of a run ({len(existing)}, '
            f'newest {osp.basename(existing[0])}). Continue it with --resume, or '
            f'start a new run there with --overwrite (its checkpoints may be '
            f'overwritten), or choose another --work-dir.')


def build_runner(cfg: Config) -> CheckedRunner:
    """The config's ``runner_type``, ``CheckedRunner`` where it names none (the
    configs of MMPretrain, MMSegmentation, MMDetection): every config here names it
    in its runtime base, so ``mim train`` and other launchers build the same runner.
    A runner type that is not a ``CheckedRunner`` would drop the run checks."""
    runner_type = cfg.setdefault('runner_type', 'CheckedRunner')
    runner_cls = RUNNERS.get(runner_type) if isinstance(runner_type, str) else None
    if not (isinstance(runner_cls, type) and issubclass(runner_cls, CheckedRunner)):
        raise ValueError(
            f'runner_type={runner_type!r}: tools/train.py trains with CheckedRunner '
            f'(the checks of docs/reliability.md) or a subclass registered in '
            f"MMEngine's RUNNERS. Remove runner_type from the config, set it to "
            f"'CheckedRunner', or derive {runner_type} from "
            f'cmae_mm.engine.runner.CheckedRunner.')
    return RUNNERS.build(cfg)


def main() -> None:
    args = parse_args()
    cfg = merge_args(Config.fromfile(args.config), args)
    build_runner(cfg).train()
    finish_launch()


if __name__ == '__main__':
    main()
