# ConMIM pretraining, ViT-B/16 on ImageNet-1K: everything but the schedule length.
# Sources: SPEC §2 (paper + released TencentARC/ConMIM code: run_conmim_pretraining.py,
# datasets.py, modeling_pretrain.py, engine_for_pretraining.py). The leaf configs set
# the architecture and the number of epochs.
_base_ = ['./default_runtime.py']  # shared with the CMAE configs

data_root = 'data/imagenet/'  # ImageNet layout: train/, meta/train.txt (or folders)

# --------------------------------------------------------------------------- data
# released: --imagenet_default_mean_and_std (ImageNet RGB mean/std)
data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

# Strong perturbation, on the full (target) view only (SPEC §2 / released
# patch_transform_hard). Images are BGR here, hence the BGR grayscale weights.
target_view_pipeline = [
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
        magnitude_range=(0.1, 2.0),
        magnitude_std='inf',
        prob=0.1),
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
# of 75 patches (min 16 per block); see conmim_vit-b_300e_blockmask.py.
beit_block_mask_generator = dict(
    type='BEiTMaskGenerator',
    input_size=(14, 14),
    num_masking_patches=75,
    max_num_patches=None,
    min_num_patches=16)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # one crop + flip shared by both views (released: RandomResizedCrop 224, scale
    # 0.08-1, bicubic, flip p 0.5)
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    # view 0 = online (masked in the model, no further augmentation),
    # view 1 = target (full, strongly perturbed)
    dict(
        type='MultiView',
        num_views=[1, 1],
        transforms=[[], target_view_pipeline]),
    simmim_mask_generator,
    dict(type='PackInputs'),
]

# 8 GPUs x 256 = 2048 (the released ViT-L run's global batch, 32 x 64; ViT-S/B:
# extrapolated, SPEC gives no ViT-S/B batch)
train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    drop_last=True,  # released: drop_last=True
    dataset=dict(
        type='ImageNet',
        data_root=data_root,
        split='train',
        pipeline=train_pipeline))

# -------------------------------------------------------------------------- model
# released _init_weights: trunc_normal(std 0.02, truncated at +-1 std) for Linear and
# Conv2d, LayerNorm 1/0; BEiTPretrainViT.init_weights then rescales the block output
# projections by 1/sqrt(2 * layer_id) (released fix_init_weight).
trunc_normal_init = dict(type='TruncNormal', std=0.02, a=-0.02, b=0.02)
model = dict(
    type='ConMIM',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='BEiTPretrainViT',
        arch=dict(  # ViT-B/16 (released conmim_base_patch16_224)
            embed_dims=768,
            num_layers=12,
            num_heads=12,
            feedforward_channels=3072),
        img_size=224,
        patch_size=16,
        drop_path_rate=0.0,  # released --drop_path 0
        final_norm=True,  # released: self.norm before the projector
        out_type='raw',
        use_abs_pos_emb=False,  # released: abs_pos_emb False
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=True,  # released: rel_pos_bias True (shared)
        layer_scale_init_value=0.1,  # released: 0.1 for base, 1e-5 for large
        init_cfg=[
            dict(**trunc_normal_init, layer='Linear'),
            dict(**trunc_normal_init, layer='Conv2d'),
            dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
        ]),
    # released _build_mlp(3, D, 4096, 256): Linear(no bias)-BN-ReLU x2,
    # Linear(no bias)-BN(affine=False), applied to every token (cls included).
    # Released code uses per-GPU BatchNorm; set norm_cfg=dict(type='SyncBN') for
    # statistics over all GPUs.
    neck=dict(
        type='TokenNonLinearNeck',
        in_channels=768,
        hid_channels=4096,
        out_channels=256,
        num_layers=3,
        with_bias=False,
        with_last_bn=True,
        with_last_bn_affine=False,
        with_last_bias=False,
        norm_cfg=dict(type='BN1d'),
        init_cfg=[
            dict(**trunc_normal_init, layer='Linear'),
            dict(type='Constant', val=1, layer=['_BatchNorm'])
        ]),
    head=dict(
        type='MIMHead',
        loss=dict(type='DenoisingContrastiveLoss', temperature=0.1)),  # --temp 0.1
    # target m: cosine 0.996 -> 1.0 over all iterations (released --t_momentum 0.996);
    # CosineEMA takes 1 - m
    base_momentum=0.004,
    end_momentum=0.0)

# ---------------------------------------------------------------------- optimizer
# released: AdamW betas (0.9, 0.98), eps 1e-8, wd 0.05 (constant), clip_grad 1.0;
# no decay on 1-d parameters (norms, biases, q/v bias, layer scale) and on cls_token /
# pos_embed (optim_factory); mixed precision: add --amp to tools/train.py.
lr = 7.5e-4  # ViT-L command (batch 2048); ViT-S/B: extrapolated from it
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=lr, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=1.0),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'q_bias': dict(decay_mult=0.0),
            'v_bias': dict(decay_mult=0.0),
            '.gamma': dict(decay_mult=0.0),
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }))

# ---------------------------------------------------------------------- schedule
# released utils.cosine_scheduler: linear warmup from 0 (here 1e-4 x lr) over
# 10 epochs, then cosine to min_lr 1e-5, per iteration.
max_epochs = 300
warmup_epochs = 10
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)

# lr above is for a global batch of 2048; `--auto-scale-lr` rescales it linearly
auto_scale_lr = dict(base_batch_size=2048)
