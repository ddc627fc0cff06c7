# UperNet on the Fashion-MNIST scenes with a ConMIM encoder (docs/transfer_study.md):
# cmae_vit-tiny-p4_upernet_1xb8-300iter_fashion-mnist-scenes-96x96.py with ConMIM's
# BEiT-style encoder as conmim_vit-base-p16_upernet_8xb2-160k_ade20k-512x512.py sets it
# (relative position bias per block, copied from the pretraining's shared table and
# resized to the 24 x 24 grid; layer scale; the momentum encoder).
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./cmae_vit-tiny-p4_upernet_1xb8-300iter_fashion-mnist-scenes-96x96.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='TransferBEiTViT',
        arch=dict(
            embed_dims={{_base_.embed_dims}},
            num_layers=4,
            num_heads=3,
            feedforward_channels=768),
        img_size={{_base_.crop_size}},
        patch_size=4,
        drop_path_rate=0.1,
        out_indices=[0, 1, 2, 3],
        out_type='featmap',
        final_norm=False,
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
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            'relative_position_bias_table': dict(decay_mult=0.0),
        }))
