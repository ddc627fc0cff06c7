# CMAE ViT-B/16 fine-tuning for the 1600-epoch pretraining: base lr 2.5e-4
# (docs/recipes.md);
# everything else as the 300-epoch config. Checkpoint argument:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./cmae_vit-base-p16_8xb128-coslr-100e_in1k.py']

base_lr = 2.5e-4  # docs/recipes.md (1600-epoch model), x batch / 256
optim_wrapper = dict(optimizer=dict(lr=base_lr * 1024 / 256))
