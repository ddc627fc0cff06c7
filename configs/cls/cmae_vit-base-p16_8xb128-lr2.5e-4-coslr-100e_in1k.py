# CMAE ViT-B/16 fine-tuning for the 1600-epoch pretraining: the 300-epoch model's
# config (cmae_vit-base-p16_8xb128-coslr-100e_in1k.py) with base lr 2.5e-4 instead of
# 5e-4 (docs/recipes.md; released configs/fine-tuning/cmae/
# cmae_base_pre1600_8x128_100e_in1k_amp.py), hence "lr2.5e-4" in the name (base lr
# per 256 images; 1e-3 at the batch of 1024). Checkpoint argument:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./cmae_vit-base-p16_8xb128-coslr-100e_in1k.py']

base_lr = 2.5e-4  # docs/recipes.md (1600-epoch model), x batch / 256
optim_wrapper = dict(optimizer=dict(lr=base_lr * _base_.batch_size / 256))
