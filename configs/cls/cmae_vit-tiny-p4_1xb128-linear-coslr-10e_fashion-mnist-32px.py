# Linear probing on Fashion-MNIST at 32 px (docs/transfer_study.md): the linear-probe
# recipe (cmae_vit-base-p16_8xb2048-linear-coslr-90e_in1k.py, MAE's protocol: frozen
# encoder, cls token after the final LayerNorm, BatchNorm without affine, linear head,
# LARS, crop + flip) with the pretraining study's tiny ViT, for scratch (a frozen
# random encoder), MAE and CMAE encoders. Each change is what the scale requires:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    './cmae_vit-base-p16_8xb2048-linear-coslr-90e_in1k.py',
    '../_base_/datasets/fashion_mnist_32px_cls.py',
    '../_base_/models/tiny_vit_fashion_mnist.py'
]

# the study's encoder: 192-d, 4 blocks, 3 heads, patch 4 at 32 px (8 x 8 patches)
num_layers = 4  # = tiny_arch.num_layers
model = dict(
    backbone=dict(
        arch={{_base_.tiny_arch}},
        img_size=32,
        patch_size={{_base_.tiny_patch_size}},
        frozen_stages=num_layers),
    neck=dict(input_features=192),
    head=dict(num_classes={{_base_.fmnist_num_classes}}, in_channels=192))
data_preprocessor = dict(
    num_classes={{_base_.fmnist_num_classes}},
    mean={{_base_.fmnist_mean}},
    std={{_base_.fmnist_std}})
# the fine-tuning runs' 5,000 labelled images with the probe's crop + flip
train_dataloader = dict(
    _base_.fmnist_train_dataloader,
    dataset=dict(
        _base_.fmnist_train_dataloader['dataset'],
        pipeline=_base_.fmnist_linear_pipeline))
val_dataloader = dict(
    _base_.fmnist_test_dataloader)  # a copy each: the merge pops _delete_
test_dataloader = dict(_base_.fmnist_test_dataloader)

# one process with batch 128 and the recipe's LARS lr 6.4 at its global batch 16384,
# not scaled down with the batch: the schedule is 2,300x shorter than the recipe's
# (the pretraining study's rule; with 6.4 x 128 / 16384 a frozen random encoder
# reaches 13.8 % top-1, docs/transfer_study.md)
batch_size = 128
optim_wrapper = dict(optimizer=dict(lr=6.4))
# 10 epochs (390 updates; the recipe: 90 epochs), warm-up 1 epoch (the recipe's 10 of
# 90), then cosine to 0
max_epochs, warmup_epochs = 10, 1
param_scheduler = [
    dict(_base_.param_scheduler[0], end=warmup_epochs),
    dict(
        _base_.param_scheduler[1],
        T_max=max_epochs - warmup_epochs,
        begin=warmup_epochs,
        end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(
    logger=dict(interval=50), checkpoint=dict(interval=1, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=batch_size)
