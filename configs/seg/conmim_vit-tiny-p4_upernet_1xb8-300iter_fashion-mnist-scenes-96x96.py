# UperNet on the Fashion-MNIST scenes with a ConMIM encoder (docs/transfer_study.md):
# cmae_vit-tiny-p4_upernet_1xb8-300iter_fashion-mnist-scenes-96x96.py with ConMIM's
# BEiT-style encoder as conmim_vit-base-p16_upernet_8xb2-160k_ade20k-512x512.py sets it
# (relative position bias per block, copied from the pretraining's shared table and
# resized to the 24 x 24 grid; layer scale; the momentum encoder).
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (the tiny_* values come with it)
_base_ = ['./cmae_vit-tiny-p4_upernet_1xb8-300iter_fashion-mnist-scenes-96x96.py']

model = dict(
    backbone=dict(
        _base_.tiny_conmim_backbone,
        img_size={{_base_.crop_size}},
        out_indices=[0, 1, 2, 3],
        out_type='featmap',
        final_norm=False))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={{_base_.tiny_conmim_no_decay}}))
