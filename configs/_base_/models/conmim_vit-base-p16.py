# ConMIM with a ViT-B/16 encoder (github.com/TencentARC/ConMIM: modeling_pretrain.py,
# engine_for_pretraining.py, run_conmim_pretraining.py; docs/recipes.md).
# The two views (released datasets.py DataAugmentationForConMIM), made on the device
# from the pipeline's one 224 x 224 crop per image
# (configs/_base_/datasets/imagenet_conmim.py train_pipeline): flip p 0.5; view 0 =
# the crop (masked in the model); view 1 = the crop strongly perturbed
# (patch_transform_hard): ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8, grayscale p 0.2,
# Gaussian blur sigma 0.1-2.0 p 0.1, solarize at 128 p 0.2. With cpu_train_pipeline the
# views come made and are only normalised.
data_preprocessor = dict(
    type='MultiViewDataPreprocessor',
    mean=[123.675, 116.28, 103.53],  # released --imagenet_default_mean_and_std
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
    shared_augments=[dict(type='BatchRandomFlip', prob=0.5)],
    view_augments=[
        [],
        [
            dict(
                type='BatchColorJitter',
                brightness=0.4,
                contrast=0.4,
                saturation=0.2,
                hue=0.1,
                prob=0.8),
            # RGB order here: the CPU pipeline's BGR (0.114, 0.587, 0.2989)
            dict(
                type='BatchRandomGrayscale',
                prob=0.2,
                channel_weights=(0.2989, 0.587, 0.114)),
            dict(type='BatchGaussianBlur', sigma_range=(0.1, 2.0), prob=0.1),
            dict(type='BatchSolarize', thr=128, prob=0.2),
        ],
    ])

model = dict(
    type='ConMIM',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        # MMPretrain's BEiTPretrainViT, attention through SDPA (same state dict;
        # use_sdpa=False: BEiTPretrainViT's own attention)
        type='ConMIMViT',
        use_sdpa=True,
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
        layer_scale_init_value=0.1),  # released: 0.1 for base, 1e-5 for large
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
        norm_cfg=dict(type='BN1d')),
    head=dict(
        type='MIMHead', loss=dict(type='DenoisingContrastiveLoss',
                                  temperature=0.1)),  # --temp 0.1
    # target m: cosine 0.996 -> 1.0 over all iterations (released --t_momentum 0.996,
    # utils.cosine_scheduler); these are 1 - m. Updated after each optimizer step by
    # TargetUpdateHook, parameters only (engine_for_pretraining.py).
    base_momentum=0.004,
    end_momentum=0.0,
    # release initialisation (modeling_pretrain.py _init_weights + fix_init_weight):
    # Linear / Conv2d trunc normal std 0.02 cut at +-1 std, zero biases, LN 1/0,
    # cls / mask tokens likewise, block output projections / sqrt(2 i)
    release_init=True)
# the target update after each optimizer step
custom_hooks = [dict(type='TargetUpdateHook')]
