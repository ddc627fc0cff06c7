# CMAE ViT-B/16 ImageNet-1K fine-tuning, recipe of the released CMAE configs
# (docs/recipes.md), for a 300-epoch pretraining (base lr 5e-4). The 1600-epoch model
# uses cmae_vit-base-p16_8xb128-lr2.5e-4-coslr-100e_in1k.py (base lr 2.5e-4).
#
# The ONE argument: the pretraining checkpoint,
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/cmae_vit-b/epoch_300.pth
# (a cmae_mm pretraining checkpoint, or a file written by tools/model_converters).
# `model.backbone.init_cfg.encoder` picks 'online' (default, `backbone.*`) or 'target'.
# Loading fails, naming the tensors, if any encoder tensor is missing.
_base_ = [
    '../_base_/default_runtime.py', '../_base_/datasets/imagenet_finetune.py',
    '../_base_/schedules/finetune_adamw_coslr-100e.py'
]

pretrained = None  # path to a cmae_mm pretraining checkpoint (see above)
encoder = 'online'  # 'online' (backbone.*) or 'target' (target_encoder.module.0.*)

base_lr = 5e-4  # docs/recipes.md: 5e-4 for the 300-epoch model, x batch / 256
# docs/recipes.md: 8 GPUs x 128 (CMAE release configs/fine-tuning/cmae/
# cmae_base_pre300_8x128_100e_in1k_amp.py: batch_size=128, gpu_num=8; MMPretrain's
# configs/mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py: the same)
batch_size = 1024

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='TransferViT',  # MMPretrain's VisionTransformer (= MAEViT's keys)
        arch=dict(
            embed_dims=768, num_layers=12, num_heads=12,
            feedforward_channels=3072),  # ViT-B (docs/recipes.md)
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,  # docs/recipes.md
        # docs/recipes.md: mean of patch tokens + new LayerNorm (ln2); final norm
        # dropped.
        out_type='avg_featmap',
        final_norm=False,
        init_cfg=dict(
            type='PretrainedEncoder',
            checkpoint=pretrained,
            encoder=encoder,
            # ln2 is the new pooling norm; it is initialised, not loaded.
            allowed_missing=[r'^ln2\.'])),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        # docs/recipes.md: label smoothing 0.1.
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # Truncated at +-2 std: MMEngine's default bounds (+-2 absolute, i.e. 1e5 std
        # at std 2e-5) let the inverse-CDF sampler return erfinv(+-1) = inf, clamped to
        # 2.
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=2e-5, a=-4e-5, b=4e-5)]),
)

# docs/recipes.md: AdamW betas (0.9, 0.999), wd 0.05, layer-wise lr decay 0.65, 100
# epochs, 5 warmup, cosine to 1e-6 (the schedule base); lr = base lr x batch / 256; no
# decay also on pos_embed (as MMPretrain's MAE fine-tune config).
optim_wrapper = dict(
    optimizer=dict(lr=base_lr * batch_size / 256),
    paramwise_cfg=dict(custom_keys={'.pos_embed': dict(decay_mult=0.0)}))
