# UperNet + CMAE ViT-S/16 on ADE20K. EXTRAPOLATED: the MAE recipe (docs/recipes.md) with
# the
# ViT-S encoder (384-d, 12 layers, 6 heads) and MMSegmentation's DeiT-S UperNet head
# width (512 channels, configs/vit/vit_deit-s16_upernet_8xb2-160k_ade20k-512x512.py).
# Checkpoint argument: --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./cmae_vit-base-p16_upernet_8xb2-160k_ade20k-512x512.py']

model = dict(
    backbone=dict(
        arch=dict(
            embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536)),
    neck=dict(embed_dim=384),
    decode_head=dict(in_channels=[384] * 4, channels=512),
    auxiliary_head=dict(in_channels=384))
