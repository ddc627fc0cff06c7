# Mask R-CNN on the Fashion-MNIST scenes with a ConMIM encoder (docs/transfer_study.md):
# cmae_vit-tiny-p4_vitdet-mask-rcnn_1xb8-lsj-300iter_fashion-mnist-scenes.py with
# ConMIM's BEiT-style encoder as in conmim_vit-base-p16_8xb128-coslr-100e_in1k.py and
# conmim_vit-base-p16_upernet_8xb2-160k_ade20k-512x512.py (relative position bias per
# block, copied from the pretraining's shared table and resized to the 24 x 24 grid;
# layer scale; the momentum encoder). Its blocks keep global attention: ViTDet's window
# blocks have no layer scale or relative position bias to load these into, and the
# 24 x 24 grid is small. No ConMIM detection recipe was released.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (the tiny_* values come with it)
_base_ = [
    './cmae_vit-tiny-p4_vitdet-mask-rcnn_1xb8-lsj-300iter_fashion-mnist-scenes.py'
]

model = dict(
    backbone=dict(
        _base_.tiny_conmim_backbone,
        img_size={{_base_.image_size}},
        out_indices=[3],  # the last block's map, as ViTDet's, for SimpleFPN
        out_type='featmap',
        final_norm=False))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={{_base_.tiny_conmim_no_decay}}))
