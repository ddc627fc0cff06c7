"""Official MAE checkpoint (timm names) -> cmae_mm: an encoder, the whole MAE, or a
CMAE initialised from MAE.

    # the encoder, for downstream configs (model.backbone.init_cfg.checkpoint)
    python tools/model_converters/mae_official_to_cmae_mm.py \
        mae_pretrain_vit_base.pth OUT.pth
    # the whole MAE (encoder + decoder, e.g. mae_visualize_vit_base.pth) as
    # MMPretrain's MAE: continue MAE pretraining with load_from
    python tools/model_converters/mae_official_to_cmae_mm.py \
        MAE_FULL.pth OUT.pth --full \
        [--config configs/pretrain/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py]
    # a CMAE that starts from MAE: online and target encoders from MAE's encoder,
    # pixel decoder from MAE's decoder, the rest initialised by the CMAE config
    python tools/model_converters/mae_official_to_cmae_mm.py MAE_FULL.pth OUT.pth \
        --init-cmae [--config configs/pretrain/cmae_vit-b.py]

Maps ``blocks.N.{norm1,attn,norm2,mlp.fc1,mlp.fc2}``, ``patch_embed.proj``, ``norm``,
``cls_token``, ``pos_embed`` (and ``decoder_*``) to MMPretrain's keys; every tensor is
checked against the model built from the config (a missing or unplaced tensor stops
the conversion naming it). The input is read weights-only; the optimizer state is not
converted (docs/converters.md). NaN / inf tensors are not written unless
``--allow-non-finite`` is given.
"""
import argparse

from cmae_mm.converters.encoders import (add_allow_non_finite, check_encoder,
                                         convert_mae_official, save_converted,
                                         save_encoders)
from cmae_mm.converters.full import (build_pretraining_model, cmae_from_mae,
                                     mae_official_to_mae_mm)
from cmae_mm.engine.checkpoint import CheckpointError, load_checkpoint_weights_only

MAE_CONFIG = 'configs/pretrain/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'


def convert(args) -> None:
    official = load_checkpoint_weights_only(args.src)
    meta = dict(converted_from=args.src, source='MAE official')

    if args.full or args.init_cmae:
        mae = build_pretraining_model(
            MAE_CONFIG if args.init_cmae or not args.config else args.config)
        mae_state = mae_official_to_mae_mm(official, mae.state_dict())
        mae.load_state_dict(mae_state, strict=True)
        if args.full:
            state_dict, what = mae_state, 'MMPretrain MAE'
        else:
            cmae = build_pretraining_model(args.config
                                           or 'configs/pretrain/cmae_vit-b.py')
            state_dict, initialised = cmae_from_mae(mae_state, cmae.state_dict())
            cmae.load_state_dict(state_dict, strict=True)
            print(f'From MAE: online and target encoders, pixel decoder. Initialised '
                  f'by the config ({len(initialised)} tensors): feature decoder, '
                  f'projector, predictor, target projector, mask generator state.')
            what = 'cmae_mm CMAE'
        save_converted(
            state_dict,
            args.dst,
            dict(meta, converter='mae_official_to_cmae_mm.py', model=what),
            args.allow_non_finite,
            what=f'The conversion of {args.src}')
        print(f'Wrote {len(state_dict)} tensors ({what}) to {args.dst}; start from it '
              f'with --cfg-options load_from={args.dst}')
        return

    encoder, dropped = convert_mae_official(official)
    print(f'Dropped (not encoder tensors): {dropped}')
    check_encoder(encoder, name=f'MAE encoder of {args.src}')
    save_encoders({'online': encoder},
                  args.dst,
                  meta=dict(meta, converter='mae_official_to_cmae_mm.py'),
                  allow_non_finite=args.allow_non_finite,
                  what=f'The MAE encoder of {args.src}')
    print(f'Wrote {len(encoder)} tensors to {args.dst} as the online encoder.')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official MAE checkpoint ({"model": ...})')
    parser.add_argument('dst', help='output .pth')
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        '--full', action='store_true', help='encoder and decoder as MMPretrain\'s MAE')
    mode.add_argument(
        '--init-cmae',
        action='store_true',
        help='a CMAE pretraining checkpoint initialised from MAE')
    parser.add_argument(
        '--config',
        default=None,
        help='config of the target model (--full: the MAE '
        'reference; --init-cmae: configs/pretrain/cmae_vit-b.py)')
    add_allow_non_finite(parser)
    args = parser.parse_args()
    try:
        convert(args)
    except CheckpointError as e:
        raise SystemExit(str(e))


if __name__ == '__main__':
    main()
