# Linear probing of a CMAE ViT-B/16 encoder, MAE protocol (docs/recipes.md: none
# released for
# CMAE; frozen encoder, cls token + BatchNorm without affine + linear head, LARS lr 6.4
# at batch 16384, 90 epochs). Warmup 10 epochs and head init std 0.01 are MAE's
# linprobe settings (as MMPretrain's vit-base-p16_8xb2048-linear-coslr-90e_in1k.py).
#
# The ONE argument: --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (`model.backbone.init_cfg.encoder`: 'online' default, or 'target').
_base_ = [
    '../_base_/default_runtime.py', '../_base_/datasets/imagenet_linear.py',
    '../_base_/schedules/finetune_adamw_coslr-100e.py'
]

pretrained = None  # path to a cmae_mm pretraining checkpoint
encoder = 'online'

# docs/recipes.md: 8 GPUs x 2048 (MMPretrain's configs/mae/benchmarks/
# vit-base-p16_8xb2048-linear-coslr-90e_in1k.py: batch_size=2048 on 8 GPUs)
batch_size = 16384
num_layers = 12

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='TransferViT',
        arch=dict(
            embed_dims=768,
            num_layers=num_layers,
            num_heads=12,
            feedforward_channels=3072),
        img_size=224,
        patch_size=16,
        frozen_stages=num_layers,  # the whole encoder is frozen (set = num_layers)
        out_type='cls_token',
        final_norm=True,  # the online encoder's final LayerNorm
        init_cfg=dict(type='PretrainedEncoder', checkpoint=pretrained,
                      encoder=encoder)),
    neck=dict(type='ClsBatchNormNeck', input_features=768),  # BN, affine=False
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='CrossEntropyLoss'),
        # Truncated at +-2 std: MMEngine's default bounds (+-2 absolute, i.e. 1e5 std
        # at std 2e-5) let the inverse-CDF sampler return erfinv(+-1) = inf, clamped to
        # 2.
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.01, a=-0.02, b=0.02)]),
)

# The fine-tuning schedule's shape (warm-up, cosine; train / val / test loops) with
# LARS. Mixed precision as MMPretrain's MAE linear probe (the config above:
# type='AmpOptimWrapper'): MixedPrecisionOptimWrapper, defaults dtype='auto' and
# loss_scale='dynamic' (float16 + dynamic loss scaling on GPUs, bfloat16 on CPUs);
# float32: tools/train.py --precision fp32.
optim_wrapper = dict(
    _delete_=True,
    type='MixedPrecisionOptimWrapper',
    optimizer=dict(type='LARS', lr=6.4, weight_decay=0.0, momentum=0.9))

max_epochs = 90
warmup_epochs = 10
param_scheduler = [
    dict(_base_.param_scheduler[0], end=warmup_epochs),
    dict(
        _base_.param_scheduler[1],
        T_max=max_epochs - warmup_epochs,
        begin=warmup_epochs,
        end=max_epochs,
        eta_min=0.0),
]
train_cfg = dict(max_epochs=max_epochs)
# The recipe's global batch (above). Opt-in as in OpenMMLab: with another number of
# GPUs or per-GPU batch pass --auto-scale-lr (linear scaling rule).
auto_scale_lr = dict(base_batch_size=batch_size)
