# Tiny CMAE for CPU: the demo (tools/demo.py) and the tests. Same algorithm, views
# and masking as the ViT-B recipe (224 px views, 65 % of 2x2 units = 68 visible
# patches); everything sized down to run in minutes on 2 CPU cores:
# - encoder: embed 192, 4 layers, 3 heads, mlp 768, patch 16 (the same tiny ViT as
#   the ConMIM demo, so that both train in minutes on 2 CPU cores);
# - decoders 128-d / 4 heads, pixel decoder 2 blocks, feature decoder 1 block;
#   projector / predictor 512 -> 128 (NOT the recipe: demo sizes);
# - data: any folder of images (CustomDataset, no labels), batch 8, 800 iterations;
# - AdamW lr 1e-3 (demo value) at batch 8, fp32, m = 0.99 (demo value, so the
#   target moves within a few hundred iterations; the recipe's is 0.996).
#   python tools/train.py configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py \
#       --cfg-options train_dataloader.dataset.data_root=/my/images
_base_ = [
    '../_base_/models/cmae_vit-base-p16.py',
    '../_base_/datasets/imagenet_cmae.py',
    '../_base_/default_runtime.py',
]

embed_dims = 192
dec_dims = 128
model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=embed_dims,
            num_layers=4,
            num_heads=3,
            feedforward_channels=768)),
    neck=dict(
        embed_dim=embed_dims,
        decoder_embed_dim=dec_dims,
        decoder_depth=2,
        decoder_num_heads=4),
    feature_decoder=dict(
        embed_dim=embed_dims,
        decoder_embed_dim=dec_dims,
        decoder_depth=1,
        decoder_num_heads=4),
    projector=dict(in_channels=embed_dims, hid_channels=512, out_channels=128),
    contrastive_head=dict(
        predictor=dict(in_channels=128, hid_channels=512, out_channels=128)),
    base_momentum=0.01)

data_root = 'data/demo_photos'
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        with_label=False,
        # all augmentation in the workers: on 2 CPU cores the main process is the
        # bottleneck (docs/performance.md); --augment-on device moves it there
        pipeline={{_base_.cpu_train_pipeline}}))

max_iters = 800
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'ln': dict(decay_mult=0.0),
            'bias': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.),
            'mask_token': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }))
# fixed iteration bounds (independent of max_iters, so a resumed run and an
# uninterrupted one follow the same lr curve)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=20),
    dict(
        type='CosineAnnealingLR',
        T_max=780,
        eta_min=1e-5,
        by_epoch=False,
        begin=20,
        end=800)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
# enabled, unlike the recipes: the demo and its tests run this one process at batch 8
# (factor 1); an extra process (or --cfg-options train_dataloader.batch_size) scales
# the lr by (processes x batch) / 8
auto_scale_lr = dict(base_batch_size=8, enable=True)
log_processor = dict(by_epoch=False, window_size=10)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(
        type='SafeCheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=1))
