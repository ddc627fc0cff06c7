"""cmae_mm CMAE pretraining checkpoint -> the official CMAE release's layout.

    python tools/model_converters/cmae_mm_to_cmae_official.py \
        work_dirs/cmae/epoch_300.pth OUT.pth [--no-bgr] [--allow-non-finite]

The inverse of ``cmae_official_to_cmae_mm.py --full``, so that our checkpoints work
with the release's tools (its ``tools/extract_backbone_weights.py``, fine-tuning
configs): ``backbone``, ``target_backbone``, ``pixel_decoder``, ``feature_decoder``,
``projector``, ``target_projector``, ``head.predictor``. By default the encoders' patch
embeddings and the pixel decoder's output channels are converted to the release's BGR
input order; ``--no-bgr`` keeps ours. Dropped and listed: the target's unused final
norm, the EMA update count, the mask generator's state (no place in the release).
Written as ``{'meta', 'state_dict'}`` like MMEngine checkpoints; no optimizer state.
NaN / inf tensors are not written unless ``--allow-non-finite`` is given.
"""
import argparse

from cmae_mm.converters.encoders import add_allow_non_finite, save_converted
from cmae_mm.converters.full import cmae_mm_to_cmae_official
from cmae_mm.engine.checkpoint import CheckpointError, load_checkpoint_weights_only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='cmae_mm CMAE pretraining checkpoint')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument(
        '--no-bgr', action='store_true', help='keep the RGB input order of cmae_mm')
    add_allow_non_finite(parser)
    args = parser.parse_args()
    state_dict, dropped = cmae_mm_to_cmae_official(
        load_checkpoint_weights_only(args.src), bgr=not args.no_bgr)
    print(f'Dropped (no place in the release): {dropped}')
    try:
        save_converted(
            state_dict,
            args.dst,
            dict(
                converted_from=args.src,
                converter='cmae_mm_to_cmae_official.py',
                bgr=not args.no_bgr),
            args.allow_non_finite,
            what=f'The conversion of {args.src}')
    except CheckpointError as e:
        raise SystemExit(str(e))
    print(f'Wrote {len(state_dict)} tensors in the official CMAE layout to {args.dst}.')


if __name__ == '__main__':
    main()
