# CMAE ViT-B/16, 800 epochs (released configs: same recipe, 800 epochs; SPEC §1).
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
        T_max=760,
        by_epoch=True,
        begin=40,
        end=800,
        convert_to_iter_based=True)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=800)
