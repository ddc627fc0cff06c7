# ConMIM ViT-L/16, 1600 epochs on ImageNet-1K. Reported: 85.5 top-1 after fine-tuning
# (ConMIM paper, arXiv 2205.09616). Exactly the released ViT-L command
# (github.com/TencentARC/ConMIM README): batch 2048, lr 7.5e-4, 10 warm-up epochs, 1600
# epochs, clip 1.0, drop path 0, layer scale 1e-5, random_mps32 masking at 0.75.
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

max_epochs = 1600  # released ViT-L command: --epochs 1600
# the schedule's warm-up (released ViT-L command: --warmup_epochs 10), then cosine to
# the last epoch
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], end=max_epochs)
]
train_cfg = dict(max_epochs=max_epochs)
