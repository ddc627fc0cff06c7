# COCO 2017 instance segmentation with large-scale jitter at 1024 (ViTDet,
# docs/recipes.md): MMDetection 3.3.0's configs/_base_/datasets/coco_instance.py
# (layout under data_root: train2017/, val2017/,
# annotations/instances_{train,val}2017.json; loaders, CocoMetric) inherited, with the
# pipelines of MMDetection's projects/ViTDet/configs/lsj-100e_coco-instance.py (not
# installed with the package, hence stated here), except the test-time padding (moved
# to the data preprocessor, see below).
_base_ = 'mmdet::_base_/datasets/coco_instance.py'
image_size = (1024, 1024)  # docs/recipes.md
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    # large-scale jitter: scale 0.1-2.0 of 1024, then a 1024 crop (docs/recipes.md)
    dict(
        type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_type='absolute_range',
        crop_size=image_size,
        recompute_bbox=True,
        allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    # no Pad here: the model's data preprocessor pads to the 1024 square
    # (models/mask-rcnn_vit-base-p16_vitdet.py), keeping img_shape the resized
    # image's
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]

train_dataloader = dict(
    # MMDetection's projects/ViTDet/configs/lsj-100e_coco-instance.py: 4 per GPU
    # (x 16 GPUs = 64); the recipe configs accumulate 2 iterations on 8 GPUs = 64
    batch_size=4,
    num_workers=8,
    batch_sampler=None,  # LSJ crops are square: no aspect-ratio grouping
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
