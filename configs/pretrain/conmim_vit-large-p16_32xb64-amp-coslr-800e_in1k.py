# ConMIM ViT-L/16, 800 epochs on ImageNet-1K. Reported: 85.2 top-1 after fine-tuning
# (ConMIM paper, arXiv 2205.09616). The released ViT-L command with 800 epochs
# (the schedule length is EXTRAPOLATED from the 1600-epoch command).
_base_ = [
    '../_base_/models/conmim_vit-base-p16.py',
    '../_base_/datasets/imagenet_conmim.py',
    '../_base_/schedules/conmim_adamw_coslr-300e.py',
    '../_base_/default_runtime.py',
]

# ViT-L/16 with layer scale 1e-5 (released command --layer_scale_init_value 1e-5)
model = dict(
    backbone=dict(arch='large', layer_scale_init_value=1e-5),
    neck=dict(in_channels=1024))
# released command: 32 GPUs x 64 = 2048
train_dataloader = dict(batch_size=64)

max_epochs = 800
warmup_epochs = 10  # released ViT-L command: --warmup_epochs 10
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
