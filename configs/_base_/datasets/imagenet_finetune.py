# ImageNet-1K data for end-to-end fine-tuning (docs/recipes.md, = MMPretrain's
# configs/mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py).
# Layout (MMPretrain's ImageNet): data_root/{train/<wnid>/*.JPEG, val/*.JPEG,
# meta/{train,val}.txt} with lines "<relative path> <class index>".
# Owned here, not inherited from MMPretrain's imagenet_bs64_swin_224.py (the base of
# the MAE config above): its pipelines differ from the recipe's (LoadImageFromFile,
# not SafeLoadImageFromFile; RandomResizedCrop; RandAugment pad_val and erasing
# fill as MMPretrain's, no magnitude_std), its batch is 64 and its workers 5, so
# every list and loader would be restated anyway.
dataset_type = 'ImageNet'
data_root = 'data/imagenet'
bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]

data_preprocessor = dict(
    type='ClsDataPreprocessor',
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
    # docs/recipes.md: Mixup 0.8 + CutMix 1.0, one of them per batch.
    batch_augments=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)

train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(
        type='FastRandomResizedCrop',
        scale=224,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # docs/recipes.md: RandAugment 2 ops, magnitude 9, std 0.5.
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    # docs/recipes.md: random erasing 0.25.
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    dict(type='PackInputs'),
]
# docs/recipes.md test: short side 256 (bicubic), centre crop 224.
test_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise'),
    dict(
        type='ResizeEdge',
        scale=256,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

# 8 GPUs x 128 = 1024 (docs/recipes.md batch).
train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
)
# the training loader's settings on the validation split, in order
val_dataloader = dict(
    train_dataloader,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(train_dataloader['dataset'], split='val', pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
