# MMPretrain's own MAE ViT-B/16 (type='MAE' from mmpretrain), the comparison baseline
# for CMAE: the settings of MMPretrain 1.2.0's
# configs/mae/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py, restated on this
# project's own base files (inheriting `mmpretrain::` bases breaks collate_fn, SPEC §4).
# Reported (CMAE README): MAE ViT-B fine-tune 82.9 (300 ep), 83.6 (1600 ep).
_base_ = [
    '../_base_/schedules/cmae_adamw_coslr-1600e.py',  # same optimiser / schedule
    '../_base_/default_runtime.py',
]
custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    type='MAE',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='MAEViT', arch='b', patch_size=16, mask_ratio=0.75),
    neck=dict(
        type='MAEPretrainDecoder',
        patch_size=16,
        in_chans=3,
        embed_dim=768,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
        mlp_ratio=4.,
    ),
    head=dict(
        type='MAEPretrainHead',
        norm_pix=True,
        patch_size=16,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    init_cfg=[
        dict(type='Xavier', layer='Linear', distribution='uniform'),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])

data_root = 'data/imagenet/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs')
]
train_dataloader = dict(
    batch_size=512,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ImageNet',
        data_root=data_root,
        split='train',
        pipeline=train_pipeline))

# MMPretrain's MAE config: no 'bn' key (MAE has no BN); same decay exclusions else
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        custom_keys={
            'ln': dict(decay_mult=0.0),
            'bias': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.),
            'mask_token': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }))
# enabled as in the CMAE configs (MMPretrain leaves it to --auto-scale-lr)
auto_scale_lr = dict(base_batch_size=4096, enable=True)
