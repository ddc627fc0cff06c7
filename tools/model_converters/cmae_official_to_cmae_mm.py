"""Official CMAE release checkpoint -> cmae_mm checkpoint (encoders, or everything).

    # the encoders, for downstream configs (model.backbone.init_cfg.checkpoint)
    python tools/model_converters/cmae_official_to_cmae_mm.py cmae_official.pth OUT.pth
    # the whole pretraining model, to continue pretraining (load_from)
    python tools/model_converters/cmae_official_to_cmae_mm.py \
        cmae_official.pth OUT.pth --full [--config configs/pretrain/cmae_vit-b.py]
    [--no-bgr-fix] [--allow-non-finite]

Encoders: reads a full CMAE pretraining checkpoint (online ``backbone.*`` and momentum
``target_backbone.*``) or a file from the release's ``extract_backbone_weights.py``
(bare keys = online encoder) and writes ``backbone.*`` / ``target_encoder.module.0.*``;
projectors, decoders and heads are dropped and listed.

``--full``: every tensor of the release's pretraining model (online and target
encoders and projectors, pixel and feature decoders, predictor) goes to its place in
the cmae_mm CMAE built from ``--config``; a tensor with no place, or a model tensor the
checkpoint does not provide, stops the conversion naming it (the target's unused final
norm, the update count and the mask generator's state are filled and listed). The
optimizer state is not converted (the release and cmae_mm order their parameter
groups differently): continue with ``load_from`` (weights; optimizer and schedule
start anew), docs/converters.md.

Colour order: the released pipeline's ``Normalize`` swapped the image to BGR before
subtracting the RGB means (docs/checkpoints.md). By default the encoders' patch
embeddings are re-expressed exactly for RGB input normalised with the RGB statistics,
as cmae_mm feeds it, and (``--full``) the pixel decoder's output channels are put in
RGB order; ``--no-bgr-fix`` keeps the released weights untouched. The input is read
weights-only; NaN / inf tensors are not written unless ``--allow-non-finite`` is given.
"""
import argparse

from cmae_mm.converters.encoders import (add_allow_non_finite, check_encoder,
                                         convert_cmae_official, save_converted,
                                         save_encoders)
from cmae_mm.converters.full import build_pretraining_model, cmae_official_to_cmae_mm
from cmae_mm.engine.checkpoint import (CheckpointError, load_checkpoint_file,
                                       load_checkpoint_weights_only)


def convert_full(args) -> None:
    ckpt = load_checkpoint_file(args.src)
    official = load_checkpoint_weights_only(args.src)
    meta = ckpt.get('meta', {}) if isinstance(ckpt.get('meta'), dict) else {}
    steps = int(meta.get('iter', 0))
    model = build_pretraining_model(args.config)
    state_dict, report = cmae_official_to_cmae_mm(
        official, model.state_dict(), bgr_fix=not args.no_bgr_fix, steps=steps)
    model.load_state_dict(state_dict, strict=True)  # every tensor in its place
    print(f'Converted {len(official)} official tensors into {len(state_dict)} '
          f'cmae_mm tensors; filled: {report["filled"]}; colour order changed: '
          f'{report["colour"] or "none (--no-bgr-fix)"}.')
    if 'optimizer' in ckpt:
        print('Note: the optimizer state of the release is not converted; continue '
              'with load_from (the optimizer and the schedule start anew).')
    save_converted(
        state_dict,
        args.dst,
        dict(
            converted_from=args.src,
            source='CMAE official (full pretraining model)',
            config=args.config,
            bgr_fix=not args.no_bgr_fix,
            official_epoch=meta.get('epoch'),
            official_iter=meta.get('iter'),
            converter='cmae_official_to_cmae_mm.py --full'),
        args.allow_non_finite,
        what=f'The conversion of {args.src}')
    print(f'Wrote {args.dst}: start a run from it with --cfg-options load_from='
          f'{args.dst}')


def convert_encoders(args) -> None:
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
            converter='cmae_official_to_cmae_mm.py'),
        allow_non_finite=args.allow_non_finite,
        what=f'The CMAE encoders of {args.src}')
    print(f'Wrote encoders {sorted(encoders)} to {args.dst}.')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official CMAE checkpoint')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument(
        '--full', action='store_true', help='convert the whole pretraining model')
    parser.add_argument(
        '--config',
        default='configs/pretrain/cmae_vit-b.py',
        help='cmae_mm pretraining config of the model (--full)')
    parser.add_argument(
        '--no-bgr-fix',
        action='store_true',
        help='do not convert the patch embedding to RGB input')
    add_allow_non_finite(parser)
    args = parser.parse_args()
    try:
        if args.full:
            convert_full(args)
        else:
            convert_encoders(args)
    except CheckpointError as e:
        raise SystemExit(str(e))


if __name__ == '__main__':
    main()
