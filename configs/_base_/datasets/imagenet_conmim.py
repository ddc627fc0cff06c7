# ImageNet-1K views and masks for ConMIM pretraining (github.com/TencentARC/ConMIM:
# datasets.py DataAugmentationForConMIM, masking_generator.py, and the pretraining
# command in its README; recipe table in docs/recipes.md).
# Layout: data_root/train/<class>/<img> (folder) or data_root/meta/train.txt; the labels
# are not used. Override with --cfg-options train_dataloader.dataset.data_root=...
data_root = 'data/imagenet/'  # ImageNet layout: train/, meta/train.txt (or folders)

# Strong perturbation, on the full (target) view only (released datasets.py
# patch_transform_hard; ConMIM paper, asymmetric image perturbation). Images are BGR
# here, hence the BGR grayscale weights.
target_view_pipeline = [
    dict(
        type='RandomApply',
        transforms=[
            dict(
                type='FastColorJitter',
                brightness=0.4,
                contrast=0.4,
                saturation=0.2,
                hue=0.1)
        ],
        prob=0.8),
    dict(
        type='FastRandomGrayscale',
        prob=0.2,
        keep_channels=True,
        channel_weights=(0.114, 0.587, 0.2989)),
    dict(
        type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.1),
    dict(type='Solarize', thr=128, prob=0.2),
]

# Masking. Default = the released command's `--mask_type random_mps32 --mask_ratio
# 0.75`: random 32x32-px units, ceil(49 * 0.75) = 37 of 49 units, expanded to the
# (14, 14) patch grid (148 of 196 patches).
simmim_mask_generator = dict(
    type='SimMIMMaskGenerator',
    input_size=224,
    mask_patch_size=32,
    model_patch_size=16,
    mask_ratio=0.75)
# Option = the released code's default `--mask_type block`: BEiT block-wise masking
# of 75 patches (min 16 per block), drawn as masking_generator.py does; see
# configs/pretrain/conmim_vit-base-p16-blockmask_8xb256-amp-coslr-300e_in1k.py.
beit_block_mask_generator = dict(
    type='ConMIMBlockMaskGenerator',
    input_size=(14, 14),
    num_masking_patches=75,
    max_num_patches=None,
    min_num_patches=16)

# Where the augmentation runs (docs/performance.md, "Augmentation on the device").
# Default, train_pipeline: the workers decode, crop and resize (view_transforms[0]),
# draw the mask and pack one 224 x 224 uint8 image per sample; the flip and the
# target view's perturbation run batched on the training device in the model's data
# preprocessor (MultiViewDataPreprocessor in
# configs/_base_/models/conmim_vit-base-p16.py), with per-sample parameters drawn from
# the same distributions.
# The two views: one crop + flip shared by both (released: RandomResizedCrop 224, scale
# 0.08-1, bicubic, flip p 0.5); view 0 = online (masked in the model, no further
# augmentation), view 1 = target (full, strongly perturbed).
view_transforms = [
    dict(
        type='FastRandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='MultiView', num_views=[1, 1], transforms=[[], target_view_pipeline]),
]
train_pipeline = [dict(type='SafeLoadImageFromFile'), view_transforms[0]] + [
    simmim_mask_generator, dict(type='PackInputs')
]
blockmask_train_pipeline = [dict(type='SafeLoadImageFromFile'), view_transforms[0]] + [
    beit_block_mask_generator, dict(type='PackInputs')
]
# The same augmentation all in the workers, as the release places it (the CPU
# demo's choice; tools/train.py --augment-on cpu): two views packed per sample, which
# the data preprocessor only normalises.
cpu_train_pipeline = [dict(type='SafeLoadImageFromFile')] + view_transforms + [
    simmim_mask_generator, dict(type='PackInputs')
]
blockmask_cpu_train_pipeline = [dict(type='SafeLoadImageFromFile')] + \
    view_transforms + [beit_block_mask_generator, dict(type='PackInputs')]

# 8 GPUs x 256 = 2048 (the released ViT-L command's global batch, 32 x 64; for ViT-S/B
# extrapolated: no ViT-S/B command was released)
train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,  # page-locked batches: asynchronous copies to the GPU
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    drop_last=True,  # released: drop_last=True
    dataset=dict(
        type='ImageNet', data_root=data_root, split='train', pipeline=train_pipeline))
