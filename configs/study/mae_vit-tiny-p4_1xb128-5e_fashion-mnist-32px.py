# MAE (He et al., CVPR 2022) in the Fashion-MNIST study: MMPretrain's MAE at 32 px;
# 75 % of the 64 patches masked per patch, norm_pix loss, decoder 128-d x 2 blocks.
_base_ = ['../_base_/models/mae_vit-base-p16.py', './_base_/fashion_mnist_32px.py']

model = dict(
    data_preprocessor={{_base_.fmnist_preprocessor}},
    backbone=dict(arch={{_base_.vit_arch}}, img_size=32, patch_size=4, mask_ratio=0.75),
    neck=dict(
        num_patches=64,
        patch_size=4,
        embed_dim=192,
        decoder_embed_dim=128,
        decoder_depth=2,
        decoder_num_heads=4),
    head=dict(patch_size=4))

# MAE's augmentation (RandomResizedCrop 0.2-1, flip) at 32 px
train_pipeline = [
    dict(type='GrayToBGR'),
    dict(
        type='RandomResizedCrop',
        scale=32,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
