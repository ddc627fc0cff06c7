"""Official ConMIM (BEiT-format) checkpoint -> cmae_mm encoder checkpoint.

    python tools/model_converters/conmim_official_to_cmae_mm.py conmim.pth OUT.pth \
        [--as online|target] [--allow-non-finite]

ConMIM's release saves the online model and the momentum model in two files, both
``{'model': ...}`` with BEiT keys (``blocks.N.gamma_1``, ``blocks.N.attn.q_bias``,
``rel_pos_bias.relative_position_bias_table``, ``norm`` ...). They are mapped to
MMPretrain's ``BEiTViT`` keys, ``lm_head``/``projectors`` are dropped, the result is
checked against a freshly built BEiT encoder (a missing key fails) and written as the
online (``backbone.*``) or, with ``--as target`` (use it for the momentum file, which
the ConMIM configs load by default), the target encoder. Read weights-only; NaN / inf
tensors are not written unless ``--allow-non-finite`` is given.
"""
import argparse

from cmae_mm.converters.encoders import (add_allow_non_finite, check_encoder,
                                         convert_beit_official, save_encoders)
from cmae_mm.engine.checkpoint import CheckpointError, load_checkpoint_weights_only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official ConMIM/BEiT checkpoint')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument(
        '--as',
        dest='as_name',
        choices=['online', 'target'],
        default='online',
        help='which encoder slot to write')
    add_allow_non_finite(parser)
    args = parser.parse_args()

    encoder, dropped = convert_beit_official(load_checkpoint_weights_only(args.src))
    print(f'Dropped (not encoder tensors): {dropped}')
    check_encoder(encoder, name=f'ConMIM encoder of {args.src}')
    try:
        save_encoders({args.as_name: encoder},
                      args.dst,
                      meta=dict(
                          converted_from=args.src,
                          source='ConMIM official',
                          converter='conmim_official_to_cmae_mm.py'),
                      allow_non_finite=args.allow_non_finite,
                      what=f'The ConMIM encoder of {args.src}')
    except CheckpointError as e:
        raise SystemExit(str(e))
    print(f'Wrote {len(encoder)} tensors to {args.dst} as the {args.as_name} encoder.')


if __name__ == '__main__':
    main()
