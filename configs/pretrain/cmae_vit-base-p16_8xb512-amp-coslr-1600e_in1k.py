# CMAE ViT-B/16, 1600 epochs, the released recipe (github.com/ZhichengHuang/CMAE,
# configs/pre-training/cmae/cmae_vit-base-p16_32xb128-coslr-1600e_in1k.py; recipe table
# in docs/recipes.md). Reported: ImageNet-1K fine-tune 84.7 top-1 (CMAE README).
# bash tools/dist_train.sh
# configs/pretrain/cmae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py 8
# 8 GPUs x 512 = global batch 4096 (released: 32 x 128), lr 1.5e-4 x 4096 / 256 =
# 2.4e-3.
# With another number of GPUs pass --auto-scale-lr: the Runner scales the lr by
# (GPUs x 512) / 4096 (auto_scale_lr in the schedule).
# Data: --cfg-options train_dataloader.dataset.data_root=/path/to/imagenet
_base_ = [
    '../_base_/models/cmae_vit-base-p16.py',
    '../_base_/datasets/imagenet_cmae.py',
    '../_base_/schedules/cmae_adamw_coslr-1600e.py',
    '../_base_/default_runtime.py',
]

train_dataloader = dict(batch_size=512)  # per GPU
# the released configs' seed (a different seed per rank)
randomness = dict(seed=60, diff_rank_seed=True)
