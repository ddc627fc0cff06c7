# ConMIM ViT-L/16 fine-tuning. EXTRAPOLATED: the ConMIM release gives no ViT-L
# fine-tuning
# hyper-parameters; ViT-B recipe with the ViT-L architecture, layer scale init 1e-5
# (docs/recipes.md; overwritten by the loaded gamma), layer decay 0.75 and drop path 0.2
# (BEiT-L fine-tuning settings).
# Checkpoint argument: --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./conmim_vit-base-p16_8xb128-coslr-100e_in1k.py']

model = dict(
    backbone=dict(
        arch=dict(
            embed_dims=1024, num_layers=24, num_heads=16, feedforward_channels=4096),
        drop_path_rate=0.2,
        layer_scale_init_value=1e-5),
    head=dict(in_channels=1024))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.75))
