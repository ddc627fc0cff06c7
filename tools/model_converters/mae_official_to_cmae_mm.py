"""Official MAE pretraining checkpoint (timm names) -> cmae_mm encoder checkpoint.

    python tools/model_converters/mae_official_to_cmae_mm.py \
        mae_pretrain_vit_base.pth OUT.pth

Maps ``blocks.N.{norm1,attn,norm2,mlp.fc1,mlp.fc2}``, ``patch_embed.proj``, ``norm``,
``cls_token``, ``pos_embed`` to MMPretrain's ViT keys, drops the decoder and
``mask_token``, checks the result against a freshly built ViT (a missing key fails)
and writes it as the online encoder (``backbone.*``). The input is read weights-only.
"""
import argparse

from cmae_mm.converters.encoders import (check_encoder, convert_mae_official,
                                         save_encoders)
from cmae_mm.transfer.weight_loading import load_checkpoint_weights_only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official MAE checkpoint ({"model": ...})')
    parser.add_argument('dst', help='output .pth')
    args = parser.parse_args()

    encoder, dropped = convert_mae_official(load_checkpoint_weights_only(args.src))
    print(f'Dropped (not encoder tensors): {dropped}')
    check_encoder(encoder, name=f'MAE encoder of {args.src}')
    save_encoders({'online': encoder},
                  args.dst,
                  meta=dict(
                      converted_from=args.src,
                      source='MAE official',
                      converter='mae_official_to_cmae_mm.py'))
    print(f'Wrote {len(encoder)} tensors to {args.dst} as the online encoder.')


if __name__ == '__main__':
    main()
