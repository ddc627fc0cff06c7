# CMAE ViT-B/16, 800 epochs: the 1600-epoch config with 800 epochs, as released
# (github.com/ZhichengHuang/CMAE,
# configs/pre-training/cmae/cmae_vit-base-p16_32xb128-coslr-800e_in1k.py).
_base_ = './cmae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

max_epochs = 800
# the same warm-up (40 epochs), then cosine to epoch 800
param_scheduler = [
    _base_.param_scheduler[0],
    dict(
        _base_.param_scheduler[1],
        T_max=max_epochs - _base_.warmup_epochs,
        end=max_epochs)
]
train_cfg = dict(max_epochs=max_epochs)
