# ConMIM ViT-B/16, 300 epochs, with BEiT block-wise masking of 75 patches (the released
# code's default --mask_type block) instead of the released command's 32-px random
# masking at 0.75. Everything else as conmim_vit-b_300e.py.
_base_ = ['./conmim_vit-b_300e.py']

data_root = 'data/imagenet/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='MultiView',
        num_views=[1, 1],
        transforms=[[], {{_base_.target_view_pipeline}}]),
    {{_base_.beit_block_mask_generator}},
    dict(type='PackInputs'),
]
train_dataloader = dict(
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
