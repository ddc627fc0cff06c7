# CMAE ViT-S/16 fine-tuning. EXTRAPOLATED: the CMAE release gives no ViT-S
# recipe; this is the ViT-B recipe (docs/recipes.md, base lr 5e-4, layer decay 0.65)
# with the
# ViT-S architecture (384-d, 12 layers, 6 heads). Checkpoint argument:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./cmae_vit-base-p16_8xb128-coslr-100e_in1k.py']

model = dict(
    backbone=dict(
        arch=dict(
            embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536)),
    head=dict(in_channels=384))
