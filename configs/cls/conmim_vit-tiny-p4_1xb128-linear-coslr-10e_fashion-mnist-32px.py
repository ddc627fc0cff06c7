# Linear probing of a ConMIM encoder on Fashion-MNIST at 32 px (docs/transfer_study.md):
# cmae_vit-tiny-p4_1xb128-linear-coslr-10e_fashion-mnist-32px.py (MAE's protocol; no
# linear-probe recipe was released for ConMIM) with ConMIM's BEiT-style encoder as in
# conmim_vit-base-p16_8xb128-coslr-100e_in1k.py (relative position bias, layer scale,
# the momentum encoder), frozen, its cls token after the final LayerNorm.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./cmae_vit-tiny-p4_1xb128-linear-coslr-10e_fashion-mnist-32px.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='TransferBEiTViT',
        arch=dict(embed_dims=192, num_layers=4, num_heads=3, feedforward_channels=768),
        img_size=32,
        patch_size=4,
        frozen_stages={{_base_.num_layers}},
        out_type='cls_token',
        final_norm=True,
        use_abs_pos_emb=False,
        use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False,
        layer_scale_init_value=0.1,  # overwritten by the loaded gamma_1/gamma_2
        use_sdpa=True,
        init_cfg=dict(
            type='PretrainedEncoder',
            checkpoint=None,
            encoder='target',
            allowed_missing=[r'relative_position_index$'])))
