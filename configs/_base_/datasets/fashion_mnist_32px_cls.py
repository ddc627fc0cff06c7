# Fashion-MNIST (Xiao et al., 2017) at 32 px for the transfer study's classification
# runs (docs/transfer_study.md): MMPretrain's FashionMNIST (60,000 training images,
# test_mode=False; 10,000 test images, test_mode=True), gray repeated to 3 channels.
# Values only, all named fmnist_*, so that a config lists this file beside a recipe
# config (configs/cls/*_in1k.py) without duplicate keys and sets the recipe's keys
# from them. Prepare the data with tools/study/transfer_study.py (or
# tools/study/fashion_mnist_data.py).
fmnist_root = 'data/fashion_mnist/'
# per-channel statistics of the 60,000 training images (gray, so equal), as the
# pretraining study (configs/study/_base_/fashion_mnist_32px.py)
fmnist_mean, fmnist_std = [72.94] * 3, [90.02] * 3
fmnist_num_classes = 10

# The recipe's fine-tuning augmentations (configs/_base_/datasets/imagenet_finetune.py:
# crop, flip, RandAugment 2 ops m9 std 0.5, random erasing 0.25) with their numbers
# unchanged; what the scale requires: crop to 32 px (224 there), and the fill values
# of RandAugment's geometric ops and of erasing are Fashion-MNIST's mean (ImageNet's
# there).
fmnist_finetune_pipeline = [
    dict(type='GrayToBGR'),
    dict(
        type='FastRandomResizedCrop',
        scale=32,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[73] * 3, interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=fmnist_mean,
        fill_std=fmnist_std),
    dict(type='PackInputs'),
]
# linear probing: crop + flip only (configs/_base_/datasets/imagenet_linear.py)
fmnist_linear_pipeline = [
    t for t in fmnist_finetune_pipeline
    if t['type'] not in ('RandAugment', 'RandomErasing')
]
# test: the whole 28-px image resized to 32 px (the pretraining study's evaluation,
# configs/_base_/datasets/fashion_mnist_knn.py); the recipe's resize 256 + centre crop
# 224 would cut into the items, which fill the 28 x 28 frame
fmnist_test_pipeline = [
    dict(type='GrayToBGR'),
    dict(type='Resize', scale=32, interpolation='bicubic', backend='pillow'),
    dict(type='PackInputs'),
]
# one process on 2 CPU cores: batch 128, one loader worker. The labelled set: the
# first 5,000 training images (457 to 556 per class; the study's budget,
# docs/transfer_study.md); evaluation on all 10,000 test images.
fmnist_train_dataloader = dict(
    _delete_=True,
    batch_size=128,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    drop_last=True,
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='FashionMNIST',
        data_root=fmnist_root,
        test_mode=False,
        download=False,
        indices=5000,
        pipeline=fmnist_finetune_pipeline))
fmnist_test_dataloader = dict(
    _delete_=True,
    batch_size=500,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='FashionMNIST',
        data_root=fmnist_root,
        test_mode=True,
        download=False,
        pipeline=fmnist_test_pipeline))
