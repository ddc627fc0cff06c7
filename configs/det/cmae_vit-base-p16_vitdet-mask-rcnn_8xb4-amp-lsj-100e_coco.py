# Mask R-CNN + ViTDet ViT-B initialised from the CMAE online encoder, COCO 2017,
# large-scale jitter at 1024, 100 epochs, mixed precision, 8 GPUs x 4 images
# (docs/recipes.md; the name in the OpenMMLab scheme, as MMDetection's
# projects/ViTDet/configs/vitdet_mask-rcnn_vit-b-mae_lsj-100e.py). Reference
# (reported, MAE ViT-B, not CMAE): MMDetection's ViTDet Mask R-CNN, 100 epochs: box
# AP 51.6 / mask AP 45.7 (MMDetection projects/ViTDet README).
#   bash tools/dist_train.sh \
#       configs/det/cmae_vit-base-p16_vitdet-mask-rcnn_8xb4-amp-lsj-100e_coco.py 8 \
#       --cfg-options \
#       model.backbone.init_cfg.checkpoint=work_dirs/cmae_vit-b/epoch_1600.pth
_base_ = [
    '../_base_/models/mask-rcnn_vit-base-p16_vitdet.py',
    '../_base_/datasets/coco_instance_lsj.py',
    '../_base_/default_runtime_det.py',
]

# Overridable: the pretraining checkpoint (cmae_mm format: `backbone.*` online encoder,
# `target_encoder.module.0.*` momentum encoder) and the COCO folder.
pretrained = None  # path to a cmae_mm pretraining checkpoint (see above)
data_root = 'data/coco/'

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='PretrainedEncoder', checkpoint=pretrained, encoder='online')))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# AdamW lr 1e-4, wd 0.1, layer decay 0.7 (docs/recipes.md): block i of L=12 gets
# lr * 0.7 ** (12 - i); embeddings 0.7 ** 13; pyramid and heads the full lr. No weight
# decay on 1-d tensors (norms, biases) and pos_embed, as MMDetection's ViTDet project.
# Mixed precision as MMDetection's ViTDet (projects/ViTDet/configs/
# lsj-100e_coco-instance.py: type='AmpOptimWrapper'): MixedPrecisionOptimWrapper,
# defaults dtype='auto' and loss_scale='dynamic' (float16 + dynamic loss scaling on
# GPUs, bfloat16 on CPUs); float32: tools/train.py --precision fp32.
#
# Batch 64 per optimizer step as ViTDet; MMDetection runs it as 16 GPUs x 4 images
# (the config above: batch_size=4, "64 images/iter", base_batch_size=64). Here 8 GPUs
# x 4 images (MMDetection's per-GPU memory) x 2 iterations accumulated per step
# (docs/transfer.md). The schedule counts iterations: MMDetection's steps x 2.
accumulative_counts = 2
optim_wrapper = dict(
    type='MixedPrecisionOptimWrapper',
    accumulative_counts=accumulative_counts,
    constructor='BackboneLayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    paramwise_cfg=dict(
        layer_decay_rate=0.7,
        flat_decay_mult=0.0,
        custom_keys={'pos_embed': dict(decay_mult=0.0)}))

# 100 epochs = 184375 steps x 64 images / 118k images (docs/recipes.md); 250 warmup
# steps from 0.001 x lr, lr x 0.1 at epochs 88 and 96 (steps 163889, 177546);
# validation and checkpoints every 5000 steps (MMDetection's ViTDet project). In
# iterations: x accumulative_counts.
max_iters = 184375 * accumulative_counts
interval = 5000 * accumulative_counts
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.001,
        by_epoch=False,
        begin=0,
        end=250 * accumulative_counts),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=[163889 * accumulative_counts, 177546 * accumulative_counts],
        gamma=0.1)
]
train_cfg = dict(
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=interval,
    dynamic_intervals=[(max_iters // interval * interval + 1, max_iters)])
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(checkpoint=dict(interval=interval))

# 64 images per step. Opt-in as in OpenMMLab: with another GPU count pass
# --auto-scale-lr. MMEngine compares
# GPUs x train_dataloader.batch_size with base_batch_size and ignores accumulation,
# hence 32 = 64 / accumulative_counts (8 GPUs x 4: lr unchanged).
auto_scale_lr = dict(enable=False, base_batch_size=64 // accumulative_counts)
