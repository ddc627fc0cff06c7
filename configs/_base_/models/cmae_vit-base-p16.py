# CMAE with a ViT-B/16 online encoder: the released code (github.com/ZhichengHuang/CMAE,
# configs/pre-training/cmae/cmae_vit-base-p16_32xb128-coslr-1600e_in1k.py,
# cmae/models/) unless said otherwise; docs/recipes.md.
temperature = 0.07  # tau of the InfoNCE loss
# projector and predictor MLP: Linear(C->1536, bias) -> BN -> ReLU ->
# Linear(1536->256, no bias). SyncBN as in MMPretrain's MoCo v3 configs; the Runner
# turns it into BN in single-process runs (and tools/train.py in CPU-distributed ones)
mlp = dict(
    type='NonLinearNeck',
    hid_channels=1536,
    out_channels=256,
    num_layers=2,
    with_bias=True,
    with_last_bn=False,
    with_last_bias=False,
    with_avg_pool=False,
    # BN eps 1e-6: the release's NonLinearNeck default (cmae/models/necks/
    # nonlinear_neck.py); PyTorch's default is 1e-5
    norm_cfg=dict(type='SyncBN', eps=1e-6))
model = dict(
    type='CMAE',
    # the views of CMAE's pixel shifting (release cmae/datasets/cmae_dataset.py), made
    # on the device from the pipeline's one 256 x 256 crop per image
    # (configs/_base_/datasets/imagenet_cmae.py train_pipeline): flip p 0.5; online
    # view = the top-left 224 crop; target view = the 224 crop shifted by 0..31 px per
    # axis, ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2, Gaussian blur
    # sigma 0.1-2.0 p 0.5. With cpu_train_pipeline the views come made and are only
    # normalised.
    data_preprocessor=dict(
        type='MultiViewDataPreprocessor',
        mean=[123.675, 116.28, 103.53],  # RGB, ImageNet
        std=[58.395, 57.12, 57.375],
        to_rgb=True,  # images are loaded BGR
        shared_augments=[dict(type='BatchRandomFlip', prob=0.5)],
        view_augments=[
            [dict(type='BatchShiftedCrop', size=224, max_shift=0)],
            [
                dict(type='BatchShiftedCrop', size=224, max_shift=31),
                dict(
                    type='BatchColorJitter',
                    brightness=0.4,
                    contrast=0.4,
                    saturation=0.4,
                    hue=0.1,
                    prob=0.8),
                # RGB order here: the CPU pipeline's BGR (0.114, 0.587, 0.2989)
                dict(
                    type='BatchRandomGrayscale',
                    prob=0.2,
                    channel_weights=(0.2989, 0.587, 0.114)),
                dict(type='BatchGaussianBlur', sigma_range=(0.1, 2.0), prob=0.5),
            ],
        ]),
    # online encoder: ViT-B/16, LN eps 1e-6, fixed sin-cos pos embed, final LN;
    # masks 65 % of 2x2-patch units -> 17 of 49 units = 68 visible patches
    backbone=dict(
        type='CMAEViT',
        arch='b',
        img_size=224,
        patch_size=16,
        mask_ratio=0.65,
        mask_unit_size=2),
    # pixel decoder = MAE's decoder: 512-d, 8 blocks, 16 heads, mlp 4, -> 16*16*3
    neck=dict(
        type='MAEPretrainDecoder',
        num_patches=196,
        patch_size=16,
        in_chans=3,
        embed_dim=768,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
        mlp_ratio=4.),
    # reconstruction: MSE on masked patches of per-patch normalised pixels
    head=dict(
        type='MAEPretrainHead',
        norm_pix=True,
        patch_size=16,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    # feature decoder: same structure, separate weights, 2 blocks, -> 768
    feature_decoder=dict(
        type='CMAEFeatureDecoder',
        num_patches=196,
        embed_dim=768,
        decoder_embed_dim=512,
        decoder_depth=2,
        decoder_num_heads=16,
        mlp_ratio=4.),
    # projector: Linear(768->1536, bias) -> BN -> ReLU -> Linear(1536->256, no bias)
    projector=dict(mlp, in_channels=768),
    # predictor + one-directional InfoNCE with keys gathered from all processes;
    # loss_ct = 2 * tau * CE(q k^T / tau)
    contrastive_head=dict(
        type='MoCoV3Head',
        predictor=dict(mlp, in_channels=256),  # 256 -> 1536 -> 256, as the projector
        loss=dict(type='CrossEntropyLoss', loss_weight=2 * temperature),
        temperature=temperature),
    # EMA m = 0.996 constant (release MomentumUpdateHook(end_momentum=0.996) with
    # base_momentum 0.996); these are 1 - m. For a cosine schedule set end_momentum
    # (e.g. 0. -> m goes 0.996 -> 1). Updated after each optimizer step by
    # TargetUpdateHook (custom_hooks below), as released.
    base_momentum=1 - 0.996,
    end_momentum=None,
    loss_rc_weight=1.0,  # release head rc_weight
    loss_ct_weight=1.0,  # lambda_c, release head ct_weight
    # release: the target encoder runs with the cls token (target_cls=True)
    target_cls=True,
    # release initialisation: Xavier-uniform Linear + zero bias + LN 1/0 for encoder
    # and both decoders; projector / predictor keep PyTorch's default Linear init
    # (False: MMPretrain's modules' own initialisation, plus any init_cfg)
    release_init=True)
# the target update after each optimizer step (release MomentumUpdateHook)
custom_hooks = [dict(type='TargetUpdateHook')]
