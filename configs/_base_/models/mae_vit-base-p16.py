# MMPretrain's own MAE ViT-B/16 (type='MAE' from mmpretrain): MMPretrain 1.2.0's
# configs/_base_/models/mae_vit-base-p16.py, inherited (a model base has no collate_fn,
# so the `_scope_` that cross-package inheritance adds does no harm,
# docs/software_stack.md), with the data preprocessor that MMPretrain keeps in its
# dataset base (configs/_base_/datasets/imagenet_bs512_mae.py).
_base_ = 'mmpretrain::_base_/models/mae_vit-base-p16.py'
model = dict(
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True))
