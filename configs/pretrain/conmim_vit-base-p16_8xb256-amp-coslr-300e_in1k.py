# ConMIM ViT-B/16, 300 epochs on ImageNet-1K. Reported: 83.5 top-1 after fine-tuning
# (ConMIM paper, arXiv 2205.09616). Recipe table: docs/recipes.md.
# EXTRAPOLATED: only the ViT-L command was released (github.com/TencentARC/ConMIM
# README), so the global batch 2048 (8 GPUs x 256), lr 7.5e-4 and 10 warm-up epochs are
# taken from it.
_base_ = [
    '../_base_/models/conmim_vit-base-p16.py',
    '../_base_/datasets/imagenet_conmim.py',
    '../_base_/schedules/conmim_adamw_coslr-300e.py',
    '../_base_/default_runtime.py',
]
