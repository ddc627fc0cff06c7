"""Reconstruction figure of a CMAE or MAE checkpoint on your images; for ConMIM, the
intra-image patch look-up figure.

    python tools/analysis/visualize_reconstruction.py CONFIG CHECKPOINT IMAGES...
        [--out FILE] [--seed 0] [--query ROW COL] [--topk 8]

CONFIG: the pretraining config of the checkpoint (CMAE, MAE: rows original / masked /
reconstruction, drawn as tools/demo.py draws them; ConMIM: rows original / query patch
with its most similar patches / similarity map). IMAGES: image files or folders;
each is resized (short side) and centre-cropped to the model's input size. CHECKPOINT
may be ``random`` to see an untrained model; a checkpoint of another model or with NaN
/ inf tensors stops the tool, naming the keys, both models and the tensors.
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="checkpoint file, or 'random'")
    parser.add_argument('images', nargs='+', help='image files or folders')
    parser.add_argument('--out', help='figure file (default: next to the checkpoint)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the masks')
    parser.add_argument(
        '--query',
        type=int,
        nargs=2,
        metavar=('ROW', 'COL'),
        help='ConMIM: query patch (default: the centre)')
    parser.add_argument('--topk', type=int, default=8, help='ConMIM: patches shown')
    parser.add_argument('--max-images', type=int, default=8)
    return parser.parse_args()


def main() -> None:
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    args = parse_args()
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import cmae_mm  # noqa: F401  (registers the modules)
    from cmae_mm.engine.checkpoint import (CheckpointError, load_model_checkpoint,
                                           verify_checkpoint)
    from cmae_mm.visualization import load_images, lookup_figure, reconstruction_figure
    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmpretrain.registry import MODELS
    model = MODELS.build(cfg.model)
    model.init_weights()
    if args.checkpoint != 'random':
        if not osp.isfile(args.checkpoint):
            raise SystemExit(f'{args.checkpoint}: no such checkpoint file')
        reason = verify_checkpoint(args.checkpoint)
        if reason is not None:
            raise SystemExit(f'not a usable PyTorch checkpoint: {args.checkpoint}: '
                             f'{reason}')
        try:
            load_model_checkpoint(model, args.checkpoint, osp.basename(args.config))
        except CheckpointError as e:
            raise SystemExit(str(e))
    size = model.backbone.patch_resolution[0] * model.backbone.patch_embed.projection \
        .kernel_size[0]
    try:
        images = load_images(args.images, size)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e))
    names = list(images)[:args.max_images]
    imgs = np.stack([images[n] for n in names])
    name = type(model).__name__
    ckpt = 'random init' if args.checkpoint == 'random' else osp.basename(
        args.checkpoint)
    out = args.out or osp.join(
        osp.dirname(osp.abspath(args.checkpoint))
        if args.checkpoint != 'random' else '.', f'{name.lower()}_figure.png')
    if hasattr(model, 'neck') and hasattr(model.head, 'patchify') and hasattr(
            model.backbone, 'random_masking'):
        backbone = model.backbone
        total = backbone.num_patches
        title = (f'{name} ({ckpt}): {total - int(total * backbone.mask_ratio)}/'
                 f'{total} patches visible; reconstruction = predicted masked '
                 f'patches + visible ones')
        if hasattr(backbone, 'num_visible'):
            title = (f'{name} ({ckpt}): {backbone.num_visible}/{total} patches '
                     f'visible; reconstruction = predicted masked patches + '
                     f'visible ones')
        path = reconstruction_figure(model, imgs, out, title, args.seed)
    else:
        title = (f'{name} ({ckpt}): query patch (red) and the {args.topk} most '
                 f'similar patches of the same image (green), cosine similarity of '
                 f'the encoder tokens')
        path = lookup_figure(model, imgs, out, title,
                             tuple(args.query) if args.query else None, args.topk)
    print(f'[figure] {len(names)} images -> {path}')


if __name__ == '__main__':
    main()
