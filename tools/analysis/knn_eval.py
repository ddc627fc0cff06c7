"""Weighted k-NN (and quick linear-probe) accuracy of a pretraining checkpoint.

    python tools/analysis/knn_eval.py CONFIG CHECKPOINT [--data-config DATA]
        [--k 20] [--temperature 0.07] [--feature mean|cls] [--encoder online|target]
        [--bank-per-class N] [--linear-probe] [--work-dir DIR]
        [--cfg-options ...] [--launcher none|pytorch|slurm|mpi]

CONFIG builds the model (any cmae_mm pretraining config: CMAE, ConMIM, MAE);
CHECKPOINT is its checkpoint, or ``random`` to evaluate the initialisation. The data
come from ``--data-config``: a k-NN config of ``configs/_base_/datasets/*_knn.py`` or
any MMPretrain classification dataset config (its ``train_dataloader`` dataset is the
bank, read with the ``val_dataloader`` pipeline; ``val_dataloader`` gives the
queries); without it, from CONFIG's own ``val_cfg`` (the study configs). Prints the
metrics and writes them (JSON) to WORK_DIR/knn_metrics.json. Distributed as
tools/test.py (dist_test.sh).

The checkpoint is loaded strictly (``CheckedLoadHook``): one of another model (e.g. a
ConMIM checkpoint with a CMAE config) or with NaN / inf tensors stops the tool,
naming the keys, both models and the tensors; no metrics are written.
"""
import argparse
import copy
import json
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import cmae_mm  # noqa: F401  (registers every module)
from cmae_mm.engine.checkpoint import (CheckedLoadHook, CheckpointError,
                                       verify_checkpoint)
from cmae_mm.engine.launch import prepare_launch
from cmae_mm.evaluation.features import ENCODERS, FEATURES


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='k-NN evaluation of a checkpoint')
    parser.add_argument('config', help='pretraining config (builds the model)')
    parser.add_argument('checkpoint', help="checkpoint file, or 'random'")
    parser.add_argument('--data-config', help='k-NN or classification data config')
    parser.add_argument('--k', type=int, help='neighbours (default 20)')
    parser.add_argument('--temperature', type=float, help='T (default 0.07)')
    parser.add_argument('--feature', choices=FEATURES, help='default: mean')
    parser.add_argument('--encoder', choices=ENCODERS, help='default: online')
    parser.add_argument(
        '--bank-per-class', type=int, help='class-balanced bank subset (images)')
    parser.add_argument(
        '--linear-probe', action='store_true', help='also the quick linear probe')
    parser.add_argument('--work-dir', help='dir for logs and knn_metrics.json')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def knn_settings(data: Config) -> dict:
    """val_dataloader / val_evaluator / val_cfg for KNNValLoop from a data config."""
    if data.get('val_cfg', {}).get('type') == 'KNNValLoop':
        return dict(
            val_dataloader=data.val_dataloader,
            val_evaluator=data.val_evaluator,
            val_cfg=data.val_cfg)
    queries = data.get('val_dataloader') or data.get('test_dataloader')
    if not queries or not data.get('train_dataloader'):
        raise SystemExit(
            'the data config needs train_dataloader (the bank) and val_dataloader '
            '(the queries), as MMPretrain classification dataset configs have, or '
            "a val_cfg of type 'KNNValLoop' (configs/_base_/datasets/*_knn.py).")
    bank = copy.deepcopy(data.train_dataloader)
    bank.dataset.pipeline = copy.deepcopy(queries.dataset.pipeline)
    bank.sampler = dict(type='DefaultSampler', shuffle=False)
    bank.pop('batch_sampler', None)
    return dict(
        val_dataloader=queries,
        val_evaluator=dict(type='Accuracy', topk=(1, 5), prefix='knn'),
        val_cfg=dict(type='KNNValLoop', bank_dataloader=bank))


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.checkpoint != 'random':
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(f'{args.checkpoint}: no such checkpoint file.')
        reason = verify_checkpoint(args.checkpoint)
        if reason is not None:
            raise SystemExit(
                f'not a usable PyTorch checkpoint: {args.checkpoint}: {reason}.')
        cfg.load_from = args.checkpoint
    else:
        cfg.load_from = None
    cfg.resume = False
    if args.data_config:
        cfg.merge_from_dict(knn_settings(Config.fromfile(args.data_config)))
    elif cfg.get('val_cfg', {}).get('type') != 'KNNValLoop':
        raise SystemExit(
            f'{args.config} has no k-NN evaluation data: pass --data-config, e.g. '
            'configs/_base_/datasets/imagenet_knn.py or an MMPretrain classification '
            'dataset config.')
    for key in ('k', 'temperature', 'feature', 'encoder', 'bank_per_class'):
        if getattr(args, key) is not None:
            cfg.val_cfg[key] = getattr(args, key)
    if args.linear_probe:
        cfg.val_cfg.linear_probe = True
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    else:
        cfg.work_dir = osp.join('./work_dirs', 'knn_eval',
                                osp.splitext(osp.basename(args.config))[0])
    # evaluation only: no training hooks that expect a train loop
    cfg.custom_hooks = [
        h for h in cfg.get('custom_hooks', []) if h.get('type') != 'TargetUpdateHook'
    ]
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg = prepare_launch(cfg, args.launcher)
    runner = Runner.from_cfg(cfg)
    # MMEngine's load_from is non-strict: the checkpoint must be this model's
    runner.register_hook(CheckedLoadHook(), 'HIGHEST')
    try:
        metrics = runner.val()
    except CheckpointError as e:
        raise SystemExit(f'[knn_eval] {e}')
    if runner.rank == 0:
        result = dict(
            config=args.config,
            checkpoint=args.checkpoint,
            **{
                k: cfg.val_cfg.get(k)
                for k in ('k', 'temperature', 'feature', 'encoder', 'bank_per_class')
            },
            metrics=metrics)
        os.makedirs(cfg.work_dir, exist_ok=True)
        out = osp.join(cfg.work_dir, 'knn_metrics.json')
        with open(out, 'w') as f:
            json.dump(result, f, indent=2, default=float)
        print(json.dumps(metrics, default=float))
        print(f'[knn_eval] metrics written to {out}')


if __name__ == '__main__':
    main()
