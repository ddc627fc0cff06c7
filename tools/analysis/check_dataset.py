"""List the bad images of a dataset: empty, truncated or undecodable files.

    python tools/analysis/check_dataset.py CONFIG [--split train|val|test]
        [--workers N] [--out bad_images.txt] [--cfg-options KEY=VALUE ...]

Builds ``{split}_dataloader.dataset`` of the config (any MMPretrain / MMSegmentation /
MMDetection dataset with ``img_path`` in its data list), checks every image in
parallel with the checks of ``SafeLoadImageFromFile`` (structure + decoding) and prints
the bad ones with the reason, one per line (also to ``--out``). Exit code 1 when any
file is bad. docs/reliability.md.
"""
import argparse
import multiprocessing
import sys
import time

import mmcv
import mmengine.fileio as fileio
from mmengine.config import Config, DictAction
from mmengine.registry import DATASETS, init_default_scope

import cmae_mm  # noqa: F401  (registers the modules)
from cmae_mm.datasets.transforms.loading import image_fault
from cmae_mm.engine.launch import check_framework


def check(path: str):
    """``(path, reason or None)`` for one image file."""
    try:
        data = fileio.get(path)
        reason = image_fault(data)
        if reason is None and mmcv.imfrombytes(data) is None:
            reason = 'cannot be decoded as an image'
    except Exception as e:
        reason = f'cannot be read or decoded ({type(e).__name__}: {e})'
    return path, reason


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--split', default='train', choices=['train', 'val', 'test'])
    parser.add_argument('--workers', type=int, default=multiprocessing.cpu_count())
    parser.add_argument('--out', help='also write the bad files here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    check_framework(cfg)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    ds_cfg = cfg[f'{args.split}_dataloader'].dataset.copy()
    ds_cfg['pipeline'] = []  # only the file list is needed
    dataset = DATASETS.build(ds_cfg)
    paths = [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]
    start = time.time()
    with multiprocessing.Pool(max(1, args.workers)) as pool:
        results = pool.map(check, paths, chunksize=64)
    bad = [(p, r) for p, r in results if r is not None]
    lines = [f'{p}\t{r}' for p, r in bad]
    if args.out:
        with open(args.out, 'w') as f:
            f.write(''.join(line + '\n' for line in lines))
    for line in lines:
        print(line)
    print(
        f'[check_dataset] {len(paths)} images checked in {time.time() - start:.1f} s '
        f'with {args.workers} workers: {len(bad)} bad.',
        file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    main()
