"""cmae_mm pretraining checkpoint -> encoder-only checkpoint for a downstream task.

    python tools/model_converters/extract_encoder.py PRETRAIN_CKPT OUT.pth \
        [--encoder online|target] [--allow-non-finite]

Keeps one encoder (``online`` = ``backbone.*``, ``target`` = the momentum encoder
``target_encoder.module.0.*``) and drops decoders, projectors, predictor and optimizer
state. The encoder is written back under ``backbone.*`` (``--as-online``, default) so
the downstream configs load it with their default ``encoder='online'``; with
``--keep-prefix`` a target encoder stays under ``target_encoder.module.0.*``. The
encoder is loaded into a freshly built MMPretrain encoder first: missing keys fail,
unexpected ones are reported. An encoder with NaN / inf tensors is not written (the
error names them) unless ``--allow-non-finite`` is given (then a warning names them).
The input is read weights-only.
"""
import argparse

from cmae_mm.converters.encoders import (add_allow_non_finite, check_encoder,
                                         save_encoders)
from cmae_mm.engine.checkpoint import (CheckpointError, extract_encoder,
                                       load_checkpoint_weights_only)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='cmae_mm pretraining checkpoint')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument('--encoder', choices=['online', 'target'], default='online')
    parser.add_argument(
        '--keep-prefix',
        action='store_true',
        help='write a target encoder under target_encoder.module.0.*')
    add_allow_non_finite(parser)
    args = parser.parse_args()

    encoder = extract_encoder(load_checkpoint_weights_only(args.src), args.encoder)
    # The target encoder of CMAE has no final LayerNorm (released cmae_vit-base configs:
    # final_norm=False).
    allowed = [r'^ln1\.'] if args.encoder == 'target' else []
    check_encoder(encoder, allowed, name=f'{args.encoder} encoder of {args.src}')
    as_name = args.encoder if args.keep_prefix else 'online'
    try:
        save_encoders({as_name: encoder},
                      args.dst,
                      meta=dict(
                          converted_from=args.src,
                          encoder=args.encoder,
                          converter='extract_encoder.py'),
                      allow_non_finite=args.allow_non_finite,
                      what=f'The {args.encoder} encoder of {args.src}')
    except CheckpointError as e:
        raise SystemExit(str(e))
    print(f'Wrote the {args.encoder} encoder ({len(encoder)} tensors) to {args.dst} '
          f'as {as_name!r}.')


if __name__ == '__main__':
    main()
