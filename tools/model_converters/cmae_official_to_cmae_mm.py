"""Official CMAE release checkpoint -> cmae_mm encoder checkpoint.

    python tools/model_converters/cmae_official_to_cmae_mm.py \
        cmae_official.pth OUT.pth \
        [--no-bgr-fix]

Reads a full CMAE pretraining checkpoint (online ``backbone.*`` and momentum
``target_backbone.*`` encoders) or a file from the release's
``extract_backbone_weights.py`` (bare keys = online encoder). The keys are already
MMPretrain's ViT keys; they are written as ``backbone.*`` /
``target_encoder.module.0.*``.

Colour order: the released pipeline's ``Normalize`` swapped the image to BGR before
subtracting the RGB means (docs/checkpoints.md). By default the patch embedding is
re-expressed
exactly for RGB input normalised with the RGB statistics, as cmae_mm feeds it
(``cmae_mm.converters.encoders.fix_bgr_patch_embed``); ``--no-bgr-fix`` keeps the
released weights untouched. The input is read weights-only; a missing encoder key
fails; projectors, decoders and heads are dropped and listed.
"""
import argparse

from cmae_mm.converters.encoders import (check_encoder, convert_cmae_official,
                                         save_encoders)
from cmae_mm.transfer.weight_loading import load_checkpoint_weights_only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official CMAE checkpoint')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument(
        '--no-bgr-fix',
        action='store_true',
        help='do not convert the patch embedding to RGB input')
    args = parser.parse_args()

    encoders, dropped = convert_cmae_official(
        load_checkpoint_weights_only(args.src), bgr_fix=not args.no_bgr_fix)
    print(f'Dropped (not encoder tensors): {dropped}')
    for name, sd in encoders.items():
        # the released target encoder may have no final norm
        check_encoder(
            sd, [r'^ln1\.'] if name == 'target' else [],
            name=f'CMAE {name} encoder of {args.src}')
    save_encoders(
        encoders,
        args.dst,
        meta=dict(
            converted_from=args.src,
            source='CMAE official',
            bgr_fix=not args.no_bgr_fix,
            converter='cmae_official_to_cmae_mm.py'))
    print(f'Wrote encoders {sorted(encoders)} to {args.dst}.')


if __name__ == '__main__':
    main()
