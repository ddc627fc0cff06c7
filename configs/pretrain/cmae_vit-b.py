# CMAE ViT-B/16, 1600 epochs: the released recipe (SPEC §1).
#   bash tools/dist_train.sh configs/pretrain/cmae_vit-b.py 8
# 8 GPUs x 512 = global batch 4096, lr 1.5e-4 x 4096 / 256 = 2.4e-3. With fewer GPUs
# the lr is scaled by (GPUs x 512) / 4096: auto_scale_lr is enabled in this config
# (no flag needed; tools/train.py --auto-scale-lr would also enable it).
# Data: --cfg-options train_dataloader.dataset.data_root=/path/to/imagenet
_base_ = [
    '../_base_/models/cmae_vit-base-p16.py',
    '../_base_/datasets/imagenet_cmae.py',
    '../_base_/schedules/cmae_adamw_coslr-1600e.py',
    '../_base_/default_runtime.py',
]
custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'

train_dataloader = dict(batch_size=512)  # per GPU
auto_scale_lr = dict(base_batch_size=4096, enable=True)
