# The Fashion-MNIST study (docs/fashion_mnist_study.md): MAE, CMAE and ConMIM with the
# same tiny ViT, resolution, data, optimizer, epochs and number of updates; only the
# algorithm (views, masking, losses) differs, each as its recipe scaled to 32 px.
_base_ = [
    '../../_base_/default_runtime.py', '../../_base_/datasets/fashion_mnist_knn.py'
]

# encoder: ViT with 192-d tokens, 4 blocks, 3 heads, patch 4 on 32 px (8 x 8 patches)
img_size, patch_size, num_patches = 32, 4, 64
embed_dims = 192
vit_arch = dict(
    _delete_=True,
    embed_dims=embed_dims,
    num_layers=4,
    num_heads=3,
    feedforward_channels=768)
# per-channel statistics of the 60,000 training images (gray, so equal)
fmnist_preprocessor = dict(  # replaces the recipes' (the study augments on the CPU)
    _delete_=True,
    type='SelfSupDataPreprocessor',
    mean=[72.94] * 3,
    std=[90.02] * 3,
    to_rgb=True)

# Budget (docs/fashion_mnist_study.md): pretraining on the first 16,000 of the 60,000
# training images (about 1,600 per class), batch 128, 5 epochs = 625 updates per
# method; on 2 CPU cores that is about 1 h for the three methods with the
# evaluations. Longer runs: --cfg-options train_cfg.max_epochs=... and the
# schedule's end, or train_dataloader.dataset.indices=None for all 60,000.
train_batch_size = 128
max_epochs = 5
train_dataloader = dict(
    batch_size=train_batch_size,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    drop_last=True,
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='FashionMNIST',
        data_root={{_base_.fmnist_root}},
        test_mode=False,
        download=False,
        indices=16000,
        pipeline=None))  # set by each method's config

# the same optimizer and schedule for all three: AdamW (betas and weight decay of
# all three recipes), 1 warm-up epoch, cosine to 0; lr 1e-3 at batch 128 is 13x
# MAE's base lr (1.5e-4 per 256), for a schedule about 1000x shorter than the
# recipes'
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'ln': dict(decay_mult=0.0),
            'norm': dict(decay_mult=0.0),
            'bias': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.),
            'mask_token': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.,
        by_epoch=True,
        begin=1,
        end=max_epochs,
        convert_to_iter_based=True)
]
# k-NN and linear probe on the 10,000 test images after every epoch
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
auto_scale_lr = dict(base_batch_size=128, enable=False)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='SafeCheckpointHook', interval=1, max_keep_ckpts=1))
randomness = dict(seed=0, diff_rank_seed=True)
