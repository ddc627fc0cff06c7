# CMAE ViT-B/16, 300 epochs: the released recipe with 300 epochs
# (github.com/ZhichengHuang/CMAE,
# configs/pre-training/cmae/cmae_vit-base-p16_32xb128-coslr-300e_in1k.py).
# Reported: ImageNet-1K fine-tune 83.8 top-1 (CMAE README).
_base_ = './cmae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=40,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=260,
        by_epoch=True,
        begin=40,
        end=300,
        convert_to_iter_based=True)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=300)
