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
# the ViT-B schedule's 5 warm-up epochs, then cosine to epoch 50
param_scheduler = [
    _base_.param_scheduler[0],
    dict(
        _base_.param_scheduler[1],
        T_max=max_epochs - _base_.warmup_epochs,
        end=max_epochs)
]
train_cfg = dict(max_epochs=max_epochs)
