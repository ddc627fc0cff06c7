# ConMIM ViT-S/16, 300 epochs on ImageNet-1K. Reported: 82.0 top-1 after fine-tuning
# (ConMIM paper, arXiv 2205.09616). As the ViT-B config (batch, lr and warm-up
# EXTRAPOLATED from
# the released ViT-L command) with the ViT-S encoder of the release
# (modeling_pretrain.py conmim_small_patch16_224: 384-d, 12 layers, 6 heads).
_base_ = ['./conmim_vit-base-p16_8xb256-amp-coslr-300e_in1k.py']

model = dict(
    backbone=dict(
        arch=dict(
            embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536),
        layer_scale_init_value=0.1),
    neck=dict(in_channels=384))
