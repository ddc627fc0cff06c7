# CMAE ViT-B/16, 300 epochs: the 1600-epoch config with 300 epochs, as released
# (github.com/ZhichengHuang/CMAE,
# configs/pre-training/cmae/cmae_vit-base-p16_32xb128-coslr-300e_in1k.py).
# Reported: ImageNet-1K fine-tune 83.8 top-1 (CMAE README).
_base_ = './cmae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

max_epochs = 300
# the same warm-up (40 epochs), then cosine to epoch 300
param_scheduler = [
    _base_.param_scheduler[0],
    dict(
        _base_.param_scheduler[1],
        T_max=max_epochs - _base_.warmup_epochs,
        end=max_epochs)
]
train_cfg = dict(max_epochs=max_epochs)
