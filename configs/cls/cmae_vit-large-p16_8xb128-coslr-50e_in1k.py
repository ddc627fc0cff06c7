# CMAE ViT-L/16 fine-tuning. EXTRAPOLATED: no ViT-L fine-tuning recipe was released for
# CMAE; these are the MAE paper's ViT-L fine-tuning settings (base lr 1e-3, layer decay
# 0.75, drop path 0.2, 50 epochs, 5 warmup), everything else as the ViT-B recipe
# (docs/recipes.md). Checkpoint argument:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./cmae_vit-base-p16_8xb128-coslr-100e_in1k.py']

model = dict(
    backbone=dict(
        arch=dict(
            embed_dims=1024, num_layers=24, num_heads=16, feedforward_channels=4096),
        drop_path_rate=0.2),
    head=dict(in_channels=1024))

base_lr = 1e-3
optim_wrapper = dict(
    optimizer=dict(lr=base_lr * 1024 / 256), paramwise_cfg=dict(layer_decay_rate=0.75))
max_epochs = 50
warmup_epochs = 5
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
        T_max=max_epochs - warmup_epochs,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        eta_min=1e-6,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
