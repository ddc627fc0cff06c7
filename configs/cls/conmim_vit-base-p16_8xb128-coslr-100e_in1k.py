# ConMIM ViT-B/16 ImageNet-1K fine-tuning, ConMIM recipe (docs/recipes.md): batch 1024,
# lr 4e-3 (at batch 1024, BEiT-style code: no further scaling), 20 warmup epochs, 100
# epochs, layer decay 0.65, drop path 0.1, Mixup 0.8 / CutMix 1.0, RandAugment m9,
# reprob 0.25, label smoothing 0.1, mean pooling. AdamW betas/wd and the cosine floor
# (1e-6) follow the BEiT fine-tuning code ConMIM builds on (EXTRAPOLATED, not in the
# ConMIM release).
#
# The ONE argument: --cfg-options model.backbone.init_cfg.checkpoint=PATH (a cmae_mm
# ConMIM pretraining checkpoint). The official example fine-tunes the MOMENTUM model,
# so `encoder` defaults to 'target' here; set model.backbone.init_cfg.encoder=online
# for the online encoder.
_base_ = [
    '../_base_/default_runtime.py', '../_base_/datasets/imagenet_finetune.py',
    '../_base_/schedules/finetune_adamw_coslr-100e.py'
]

pretrained = None  # path to a cmae_mm ConMIM pretraining checkpoint
# docs/recipes.md: the official example fine-tunes the momentum model
encoder = 'target'

lr = 4e-3  # docs/recipes.md, at batch 1024
# docs/recipes.md: 8 GPUs x 128 (ConMIM README fine-tuning command; MMPretrain's
# configs/beit/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py: the same)
batch_size = 1024

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='TransferBEiTViT',  # MMPretrain's BEiTViT (= BEiTPretrainViT's keys)
        arch=dict(
            embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072),
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,  # docs/recipes.md
        out_type='avg_featmap',  # docs/recipes.md: mean pooling (+ new LayerNorm ln2)
        final_norm=False,
        use_abs_pos_emb=False,
        # The pretraining's shared relative position table is copied into every
        # block's table (BEiT's documented fine-tuning init), see TransferBEiTViT.
        use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False,
        layer_scale_init_value=0.1,  # overwritten by the loaded gamma_1/gamma_2
        use_sdpa=True,  # attention through SDPA, the relative bias as additive mask
        init_cfg=dict(
            type='PretrainedEncoder',
            checkpoint=pretrained,
            encoder=encoder,
            # ln2: new pooling norm; relative_position_index: buffers computed from
            # the patch grid, never loaded.
            allowed_missing=[r'^ln2\.', r'relative_position_index$'])),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # Truncated at +-2 std: MMEngine's default bounds (+-2 absolute, i.e. 1e5 std
        # at std 2e-5) let the inverse-CDF sampler return erfinv(+-1) = inf, clamped to
        # 2.
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=2e-5, a=-4e-5, b=4e-5)]),
)

# docs/recipes.md: layer decay 0.65, 100 epochs, cosine to 1e-6 (the schedule base);
# lr 4e-3 at batch 1024; no decay also on the layer scales and relative position
# tables (BEiT fine-tuning code).
optim_wrapper = dict(
    optimizer=dict(lr=lr),
    paramwise_cfg=dict(
        custom_keys={
            '.gamma': dict(decay_mult=0.0),
            'relative_position_bias_table': dict(decay_mult=0.0),
        }))
warmup_epochs = 20  # docs/recipes.md
param_scheduler = [
    dict(_base_.param_scheduler[0], end=warmup_epochs),
    dict(
        _base_.param_scheduler[1],
        T_max=_base_.max_epochs - warmup_epochs,
        begin=warmup_epochs),
]
