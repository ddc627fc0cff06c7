# ConMIM ViT-S/16 fine-tuning. EXTRAPOLATED: the release has no ViT-S fine-tuning
# model (docs/recipes.md); this is the ViT-B recipe with the ViT-S architecture.
# Checkpoint argument: --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./conmim_vit-base-p16_8xb128-coslr-100e_in1k.py']

model = dict(
    backbone=dict(
        arch=dict(
            embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536)),
    head=dict(in_channels=384))
