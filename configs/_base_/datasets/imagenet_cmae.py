# ImageNet-1K train split for CMAE pretraining: the pixel-shifting views of the released
# code (cmae/datasets/cmae_dataset.py; docs/recipes.md).
# Override the location with
#   --cfg-options train_dataloader.dataset.data_root=/path/to/imagenet
# Layout: data_root/train/<class>/<img> (folder) or data_root/meta/train.txt (list:
# "<path relative to data_root/train> <label>" per line; the labels are not used).
# Own images without labels: replace the dataset dict (see docs/recipes.md),
#   train_dataloader = dict(dataset=dict(_delete_=True, type='CustomDataset',
#       data_root='/my/images', with_label=False, pipeline=train_pipeline))
dataset_type = 'ImageNet'
data_root = 'data/imagenet/'

# Where the augmentation runs (docs/performance.md, "Augmentation on the device").
# Default, train_pipeline: the workers do what must happen per file (decode, the
# shared crop and resize) and pack one 256 x 256 uint8 image per sample; the flip, the
# two pixel-shifted 224 crops and the target view's colour jitter, grayscale and blur
# run batched on the training device in the model's data preprocessor
# (MultiViewDataPreprocessor in configs/_base_/models/cmae_vit-base-p16.py), with
# per-sample parameters drawn from the same distributions.
# shared by both views: one crop to 256 x 256 (scale 0.2-1.0, bicubic)
shared_crop = dict(
    type='FastRandomResizedCrop',
    scale=256,
    crop_ratio_range=(0.2, 1.0),
    backend='pillow',
    interpolation='bicubic')
train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    shared_crop,
    dict(
        type='PackInputs',
        meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape')),
]
# The same augmentation all in the workers, as the release places it (the CPU
# demo's choice; tools/train.py --augment-on cpu). The data preprocessor then only
# normalises the two views.
cpu_train_pipeline = [
    # BGR uint8; a bad file is skipped and listed (docs/reliability.md)
    dict(type='SafeLoadImageFromFile'),
    shared_crop,  # + flip, shared by both views
    dict(type='RandomFlip', prob=0.5),
    # online view at (0, 0); target view shifted by 0..31 px per axis, then
    # ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2, blur p 0.5 (0.1-2.0)
    dict(
        type='PixelShift',
        view_size=224,
        max_shift=31,
        target_transforms=[
            dict(
                type='RandomApply',
                transforms=[
                    dict(
                        type='FastColorJitter',
                        brightness=0.4,
                        contrast=0.4,
                        saturation=0.4,
                        hue=0.1)
                ],
                prob=0.8),
            # weights in BGR order because the image is BGR until the data
            # preprocessor (the released code used BGR weights on RGB images)
            dict(
                type='FastRandomGrayscale',
                prob=0.2,
                keep_channels=True,
                channel_weights=(0.114, 0.587, 0.2989)),
            dict(
                type='GaussianBlur',
                magnitude_range=(0.1, 2.0),
                magnitude_std='inf',
                prob=0.5),
        ]),
    dict(
        type='PackInputs',
        meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape', 'flip',
                   'flip_direction', 'pixel_shift')),
]

train_dataloader = dict(
    batch_size=512,  # per GPU; 8 GPUs x 512 = 4096 (docs/recipes.md)
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,  # page-locked batches: asynchronous copies to the GPU
    sampler=dict(type='DefaultSampler', shuffle=True),
    drop_last=True,  # every batch full: BatchNorm in the projector needs >= 2
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline))
