# UperNet + CMAE ViT-L/16 on ADE20K. EXTRAPOLATED: the MAE recipe (docs/recipes.md) with
# the
# ViT-L encoder; blocks 8/12/16/24 (out_indices 7, 11, 15, 23), head width 1024,
# drop path 0.2, lr 2e-5, layer decay 0.95 and 3000 warmup iterations are
# MMSegmentation's BEiT-L UperNet settings (0.65 ** 25 would all but freeze the stem).
# Batch 8 GPUs x 2 at 512x512 as the ViT-B recipe (MAE recipe's 16) and its mixed
# precision; MMSegmentation's BEiT-L uses 8 x 1 at 640x640, also in mixed precision
# (configs/beit/beit-large_upernet_8xb1-amp-160k_ade20k-640x640.py; docs/transfer.md).
# Checkpoint argument: --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./cmae_vit-base-p16_upernet_8xb2-160k_ade20k-512x512.py']

model = dict(
    backbone=dict(
        arch=dict(
            embed_dims=1024, num_layers=24, num_heads=16, feedforward_channels=4096),
        drop_path_rate=0.2,
        out_indices=[7, 11, 15, 23]),
    neck=dict(embed_dim=1024),
    decode_head=dict(in_channels=[1024] * 4, channels=1024),
    auxiliary_head=dict(in_channels=1024))
optim_wrapper = dict(optimizer=dict(lr=2e-5), paramwise_cfg=dict(layer_decay_rate=0.95))
warmup_iters = 3000
param_scheduler = [
    dict(_base_.param_scheduler[0], end=warmup_iters),
    dict(_base_.param_scheduler[1], begin=warmup_iters),
]
