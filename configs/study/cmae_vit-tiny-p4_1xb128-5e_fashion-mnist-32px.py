# CMAE (Huang et al., TPAMI 2024) in the Fashion-MNIST study: the recipe's views,
# masking and losses scaled from 224 to 32 px (factor 1/7):
# - shared crop 36 px (256 / 224 x 32 = 36.6), online view at (0, 0), target view
#   shifted by 0..4 px per axis (31 / 7 = 4.4), target colour augmentation as the
#   recipe (jitter on gray images: brightness and contrast act), blur sigma / 7;
# - 65 % of 2x2-patch units masked (16 units, 5 kept = 20 of 64 patches visible;
#   recipe 17 of 49 units = 68 of 196);
# - pixel decoder as MAE's in the study (128-d x 2), feature decoder 1 block,
#   projector / predictor 192 -> 512 -> 128; tau 0.07, m = 0.996 as the recipe.
_base_ = ['../_base_/models/cmae_vit-base-p16.py', './_base_/fashion_mnist_32px.py']

model = dict(
    data_preprocessor={{_base_.fmnist_preprocessor}},
    backbone=dict(arch={{_base_.vit_arch}}, img_size=32, patch_size=4, mask_ratio=0.65),
    neck=dict(
        num_patches=64,
        patch_size=4,
        embed_dim=192,
        decoder_embed_dim=128,
        decoder_depth=2,
        decoder_num_heads=4),
    head=dict(patch_size=4),
    feature_decoder=dict(
        num_patches=64,
        embed_dim=192,
        decoder_embed_dim=128,
        decoder_depth=1,
        decoder_num_heads=4),
    projector=dict(
        in_channels=192,
        hid_channels=512,
        out_channels=128,
        norm_cfg=dict(type='BN1d', eps=1e-6)),
    contrastive_head=dict(
        predictor=dict(
            in_channels=128,
            hid_channels=512,
            out_channels=128,
            norm_cfg=dict(type='BN1d', eps=1e-6))))

train_pipeline = [
    dict(type='GrayToBGR'),
    dict(
        type='RandomResizedCrop',
        scale=36,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='PixelShift',
        view_size=32,
        max_shift=4,
        target_transforms=[
            dict(
                type='RandomApply',
                transforms=[
                    dict(
                        type='ColorJitter',
                        brightness=0.4,
                        contrast=0.4,
                        saturation=0.4,
                        hue=0.1)
                ],
                prob=0.8),
            dict(
                type='RandomGrayscale',
                prob=0.2,
                keep_channels=True,
                channel_weights=(0.114, 0.587, 0.2989)),
            dict(
                type='GaussianBlur',
                magnitude_range=(0.1 / 7, 2.0 / 7),
                magnitude_std='inf',
                prob=0.5),
        ]),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
