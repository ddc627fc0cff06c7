# ConMIM on a CPU in minutes: a 4-layer, 192-d ViT pretrained on a plain folder of
# photographs. Same algorithm, views, masking and optimizer as the ImageNet
# configs; only the model size, the projector width, the data and the schedule shrink.
# Make the folder with `cmae_mm.testing.write_photo_folder(data_root)` (the photographs
# shipped inside scikit-image), then
#   python tools/train.py configs/pretrain/conmim_vit-tiny-p16_1xb8-20e_demo.py \
#       --work-dir DIR --cfg-options train_dataloader.dataset.data_root=FOLDER
_base_ = ['./conmim_vit-base-p16_8xb256-amp-coslr-300e_in1k.py']

data_root = 'data/demo_photos/'  # any folder of images (no labels needed)

model = dict(
    backbone=dict(
        arch=dict(embed_dims=192, num_layers=4, num_heads=3, feedforward_channels=768),
        layer_scale_init_value=0.1),
    # 192 -> 1024 -> 1024 -> 256 (ImageNet configs: D -> 4096 -> 4096 -> 256)
    neck=dict(in_channels=192, hid_channels=1024))

train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        with_label=False,
        # all augmentation in the workers: on 2 CPU cores the main process is the
        # bottleneck (docs/performance.md); --augment-on device moves it there
        pipeline={{_base_.cpu_train_pipeline}}))

# float32, as the CMAE demo (the tests compare against it); the ImageNet configs'
# MixedPrecisionOptimWrapper: --precision auto (or --amp)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=1e-3))

max_epochs = 20
warmup_epochs = 2
# the ImageNet schedule's shape (linear warm-up, cosine to 1e-5), demo lengths
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-2, end=warmup_epochs),
    dict(_base_.param_scheduler[1], begin=warmup_epochs, end=max_epochs)
]
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='SafeCheckpointHook', interval=max_epochs, max_keep_ckpts=1))
# enabled, unlike the recipes: the demo and its tests run this one process at batch 8
# (factor 1); an extra process (or --cfg-options train_dataloader.batch_size) scales
# the lr by (processes x batch) / 8
auto_scale_lr = dict(base_batch_size=8, enable=True)
