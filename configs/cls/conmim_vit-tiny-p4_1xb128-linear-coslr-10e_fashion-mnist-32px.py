# Linear probing of a ConMIM encoder on Fashion-MNIST at 32 px (docs/transfer_study.md):
# cmae_vit-tiny-p4_1xb128-linear-coslr-10e_fashion-mnist-32px.py (MAE's protocol; no
# linear-probe recipe was released for ConMIM) with ConMIM's BEiT-style encoder as in
# conmim_vit-base-p16_8xb128-coslr-100e_in1k.py (relative position bias, layer scale,
# the momentum encoder), frozen, its cls token after the final LayerNorm.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (the tiny_* values come with it)
_base_ = ['./cmae_vit-tiny-p4_1xb128-linear-coslr-10e_fashion-mnist-32px.py']

model = dict(
    backbone=dict(
        _base_.tiny_conmim_backbone,
        img_size=32,
        frozen_stages={{_base_.num_layers}},
        out_type='cls_token',
        final_norm=True))
