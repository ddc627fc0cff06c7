# CMAE ViT-B/16, 300 epochs (released configs: same recipe, 300 epochs; SPEC §1).
# Reported: ImageNet-1K fine-tune 83.8 top-1 (CMAE README).
_base_ = './cmae_vit-b.py'
custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'

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
