# ConMIM (Yi et al., ICLR 2023) in the Fashion-MNIST study: the recipe's views,
# masking and loss scaled from 224 to 32 px:
# - crop 0.08-1 + flip shared, target view with the recipe's strong perturbation
#   (jitter, grayscale, blur sigma / 7, solarize) on the same crop;
# - SimMIM masking of 2x2-patch units, 75 % (recipe: 32 px units of 16 px patches);
# - per-token projector 192 -> 512 -> 512 -> 128, tau 0.1, m 0.996 -> 1.
_base_ = ['../_base_/models/conmim_vit-base-p16.py', './_base_/fashion_mnist_32px.py']

model = dict(
    data_preprocessor={{_base_.fmnist_preprocessor}},
    backbone=dict(arch={{_base_.vit_arch}}, img_size=32, patch_size=4),
    neck=dict(in_channels=192, hid_channels=512, out_channels=128))

train_pipeline = [
    dict(type='GrayToBGR'),
    dict(
        type='RandomResizedCrop',
        scale=32,
        crop_ratio_range=(0.08, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='MultiView',
        num_views=[1, 1],
        transforms=[[],
                    [
                        dict(
                            type='RandomApply',
                            transforms=[
                                dict(
                                    type='ColorJitter',
                                    brightness=0.4,
                                    contrast=0.4,
                                    saturation=0.2,
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
                            prob=0.1),
                        dict(type='Solarize', thr=128, prob=0.2),
                    ]]),
    dict(
        type='SimMIMMaskGenerator',
        input_size=32,
        mask_patch_size=8,
        model_patch_size=4,
        mask_ratio=0.75),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
