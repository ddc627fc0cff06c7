# Mask R-CNN with ViTDet's plain ViT-B backbone and simple feature pyramid
# (docs/recipes.md): MMDetection 3.3.0's configs/_base_/models/mask-rcnn_r50_fpn.py
# (its heads, assigners, samplers and test settings) inherited, changed where ViTDet
# differs (marked "ViTDet"): backbone, neck, 2-conv RPN, 4conv1fc box head and mask
# head with LN2d, 1024x1024 batch padding.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
backbone_norm_cfg = dict(type='LN', eps=1e-6)  # the ViT's own LayerNorms (MAE ViT-B)
norm_cfg = dict(type='LN2d', requires_grad=True)  # ViTDet: LN in pyramid and RoI heads

model = dict(
    data_preprocessor=dict(
        # ViTDet's fixed 1024x1024 input (docs/recipes.md): test images (resized to
        # fit 1024) are padded here to the 1024 square, as detectron2's ViTDet
        # `square_pad`;
        # a pipeline `Pad` would also set img_shape to 1024x1024 and let predicted
        # boxes reach into the padding (MMDetection's ViTDet project does that).
        pad_size_divisor=1024,
        # training batches: LSJ crops padded to 1024x1024
        batch_augments=[
            dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)
        ]),
    backbone=dict(
        _delete_=True,  # the base's ResNet-50
        type='ViTDet',  # cmae_mm.det.vitdet (MMPretrain ViTSAM, SAM neck off)
        # ViT-B (docs/recipes.md); window attention in all blocks but 2, 5, 8, 11
        arch=dict(
            embed_dims=768,
            num_layers=12,
            num_heads=12,
            feedforward_channels=3072,
            global_attn_indexes=[2, 5, 8, 11]),
        img_size=1024,  # ViTDet input 1024x1024 (docs/recipes.md)
        patch_size=16,
        drop_path_rate=0.1,  # docs/recipes.md
        window_size=14,  # docs/recipes.md
        use_rel_pos=True,  # decomposed relative position, docs/recipes.md
        use_sdpa=True,  # attention through SDPA, the relative term as additive mask
        qkv_bias=True,
        norm_cfg=backbone_norm_cfg,
        # The CMAE online encoder; `checkpoint` is set by the top-level config.
        init_cfg=dict(type='PretrainedEncoder', checkpoint=None, encoder='online')),
    neck=dict(
        _delete_=True,  # the base's FPN
        type='SimpleFPN',  # cmae_mm.det.simple_fpn; strides 4, 8, 16, 32 + pool to 64
        backbone_channel=768,
        in_channels=[192, 384, 768, 768],
        out_channels=256,
        num_outs=5,
        norm_cfg=norm_cfg),
    rpn_head=dict(num_convs=2),  # ViTDet: RPN with 2 convs (docs/recipes.md)
    roi_head=dict(
        bbox_head=dict(
            # ViTDet: 4conv1fc box head (docs/recipes.md)
            type='Shared4Conv1FCBBoxHead',
            conv_out_channels=256,
            norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))  # ViTDet: LN in the mask head
