# UperNet + CMAE ViT-B/16 on ADE20K, 512x512, 160k iterations: MMSegmentation's MAE
# recipe (configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py,
# docs/recipes.md):
# features of blocks 4/6/8/12, Feature2Pyramid (x4, x2, x1, x0.5), UPerHead 768 ch +
# FCN auxiliary head (weight 0.4), AdamW lr 1e-4 wd 0.05, layer decay 0.65 (applied by
# BackboneLayerDecayOptimWrapperConstructor: MMSegmentation's own constructor refuses
# non-MAE/BEiT class names, docs/software_stack.md), 1500 warmup iterations then poly,
# sliding-window
# test (stride 341). Mixed precision by default, as the recipe (see optim_wrapper).
#
# The ONE argument: --cfg-options model.backbone.init_cfg.checkpoint=PATH (a cmae_mm
# pretraining checkpoint); model.backbone.init_cfg.encoder = 'online' | 'target'.
# The 224-px position embedding is resized (bicubic) to the 32x32 grid on loading.
_base_ = [
    '../_base_/default_runtime_seg.py', '../_base_/schedules/schedule_160k.py',
    '../_base_/datasets/ade20k.py'
]

pretrained = None  # path to a cmae_mm pretraining checkpoint
encoder = 'online'  # 'online' (backbone.*) or 'target' (target_encoder.module.0.*)

crop_size = (512, 512)  # docs/recipes.md
embed_dims = 768
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='TransferViT',  # MMPretrain's VisionTransformer = CMAE encoder keys
        arch=dict(
            embed_dims=embed_dims,
            num_layers=12,
            num_heads=12,
            feedforward_channels=3072),
        img_size=crop_size,
        patch_size=16,
        drop_path_rate=0.1,
        out_indices=[3, 5, 7, 11],  # blocks 4, 6, 8, 12 (docs/recipes.md)
        out_type='featmap',
        final_norm=False,
        init_cfg=dict(type='PretrainedEncoder', checkpoint=pretrained,
                      encoder=encoder)),
    neck=dict(
        type='Feature2Pyramid',
        embed_dim=embed_dims,
        rescales=[4, 2, 1, 0.5],
        norm_cfg=norm_cfg),
    decode_head=dict(
        type='UPerHead',
        in_channels=[embed_dims] * 4,
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=768,  # docs/recipes.md
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=embed_dims,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                         loss_weight=0.4)),  # docs/recipes.md
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

# docs/recipes.md: AdamW lr 1e-4, wd 0.05, layer decay 0.65. No weight decay on 1-D
# tensors
# (norms, biases), pos_embed and cls_token, as MMSegmentation's MAE constructor.
# Mixed precision as MMSegmentation's MAE config (its name's "amp" and
# `fp16 = dict(loss_scale='dynamic')`, an MMSegmentation 0.x key that MMEngine's
# Runner no longer reads, docs/transfer.md): MixedPrecisionOptimWrapper, defaults
# dtype='auto' and loss_scale='dynamic' (float16 + dynamic loss scaling on GPUs,
# bfloat16 on CPUs); float32: tools/train.py --precision fp32.
optim_wrapper = dict(
    _delete_=True,  # the schedule base's SGD
    type='MixedPrecisionOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='BackboneLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        flat_decay_mult=0.0,
        custom_keys={
            '.pos_embed': dict(decay_mult=0.0),
            '.cls_token': dict(decay_mult=0.0),
        }))

warmup_iters = 1500  # docs/recipes.md
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=warmup_iters,
        end=160000,
        by_epoch=False),
]
# 8 GPUs x 2 images (the dataset base). Opt-in as in OpenMMLab: with another number of
# GPUs or per-GPU batch pass --auto-scale-lr (linear scaling rule).
auto_scale_lr = dict(base_batch_size=16, enable=False)
