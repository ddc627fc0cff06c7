# ImageNet-1K for MAE pretraining: MMPretrain 1.2.0's
# configs/_base_/datasets/imagenet_bs512_mae.py (one RandomResizedCrop 224, scale
# 0.2-1.0, bicubic, flip), restated here.
data_root = 'data/imagenet/'
train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(
        type='FastRandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs')
]
train_dataloader = dict(
    batch_size=512,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,  # page-locked batches: asynchronous copies to the GPU
    sampler=dict(type='DefaultSampler', shuffle=True),
    drop_last=True,
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ImageNet', data_root=data_root, split='train', pipeline=train_pipeline))
