# Mask R-CNN with ViTDet's plain ViT-B backbone and simple feature pyramid
# (docs/recipes.md).
# Owned here (no `mmdet::` inheritance, docs/software_stack.md); the Mask R-CNN parts
# are MMDetection
# 3.3.0's and their settings are its configs/_base_/models/mask-rcnn_r50_fpn.py, except
# where ViTDet differs (marked "ViTDet"): backbone, neck, 2-conv RPN, 4conv1fc box head
# and mask head with LN2d, 1024x1024 batch padding.
backbone_norm_cfg = dict(type='LN', eps=1e-6)  # the ViT's own LayerNorms (MAE ViT-B)
norm_cfg = dict(type='LN2d', requires_grad=True)  # ViTDet: LN in pyramid and RoI heads

model = dict(
    type='MaskRCNN',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_mask=True,
        # ViTDet's fixed 1024x1024 input (docs/recipes.md): test images (resized to fit
        # 1024)
        # are padded here to the 1024 square, as detectron2's ViTDet `square_pad`;
        # a pipeline `Pad` would also set img_shape to 1024x1024 and let predicted
        # boxes reach into the padding (MMDetection's ViTDet project does that).
        pad_size_divisor=1024,
        # training batches: LSJ crops padded to 1024x1024
        batch_augments=[
            dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)
        ]),
    backbone=dict(
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
        type='SimpleFPN',  # cmae_mm.det.simple_fpn; strides 4, 8, 16, 32 + pool to 64
        backbone_channel=768,
        in_channels=[192, 384, 768, 768],
        out_channels=256,
        num_outs=5,
        norm_cfg=norm_cfg),
    rpn_head=dict(
        type='RPNHead',
        in_channels=256,
        feat_channels=256,
        num_convs=2,  # ViTDet: RPN with 2 convs (docs/recipes.md)
        anchor_generator=dict(
            type='AnchorGenerator',
            scales=[8],
            ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(
            # ViTDet: 4conv1fc box head (docs/recipes.md)
            type='Shared4Conv1FCBBoxHead',
            conv_out_channels=256,
            norm_cfg=norm_cfg,
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0., 0., 0., 0.],
                target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(
            type='FCNMaskHead',
            num_convs=4,
            in_channels=256,
            conv_out_channels=256,
            norm_cfg=norm_cfg,  # ViTDet: LN in the mask head
            num_classes=80,
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.7,
                neg_iou_thr=0.3,
                min_pos_iou=0.3,
                match_low_quality=True,
                ignore_iof_thr=-1),
            sampler=dict(
                type='RandomSampler',
                num=256,
                pos_fraction=0.5,
                neg_pos_ub=-1,
                add_gt_as_proposals=False),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        rpn_proposal=dict(
            nms_pre=2000,
            max_per_img=1000,
            nms=dict(type='nms', iou_threshold=0.7),
            min_bbox_size=0),
        rcnn=dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.5,
                min_pos_iou=0.5,
                match_low_quality=True,
                ignore_iof_thr=-1),
            sampler=dict(
                type='RandomSampler',
                num=512,
                pos_fraction=0.25,
                neg_pos_ub=-1,
                add_gt_as_proposals=True),
            mask_size=28,
            pos_weight=-1,
            debug=False)),
    test_cfg=dict(
        rpn=dict(
            nms_pre=1000,
            max_per_img=1000,
            nms=dict(type='nms', iou_threshold=0.7),
            min_bbox_size=0),
        rcnn=dict(
            score_thr=0.05,
            nms=dict(type='nms', iou_threshold=0.5),
            max_per_img=100,
            mask_thr_binary=0.5)))
