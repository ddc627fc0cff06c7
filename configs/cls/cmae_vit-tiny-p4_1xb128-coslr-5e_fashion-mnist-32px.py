# Fine-tuning on Fashion-MNIST at 32 px (docs/transfer_study.md): the CMAE fine-tuning
# recipe (cmae_vit-base-p16_8xb128-coslr-100e_in1k.py: AdamW, layer decay 0.65, drop
# path 0.1, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, RandAugment, random erasing,
# mean pooling) with the pretraining study's tiny ViT (configs/study/), for scratch,
# MAE and CMAE encoders (MAE's and CMAE's encoders have the same keys). Each change is
# what the scale requires:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH   (None: from scratch)
_base_ = [
    './cmae_vit-base-p16_8xb128-coslr-100e_in1k.py',
    '../_base_/datasets/fashion_mnist_32px_cls.py',
    '../_base_/models/tiny_vit_fashion_mnist.py'
]

# the study's encoder: 192-d, 4 blocks, 3 heads, patch 4 at 32 px (8 x 8 patches)
model = dict(
    backbone=dict(
        arch={{_base_.tiny_arch}}, img_size=32, patch_size={{_base_.tiny_patch_size}}),
    head=dict(num_classes={{_base_.fmnist_num_classes}}, in_channels=192))
data_preprocessor = dict(
    num_classes={{_base_.fmnist_num_classes}},
    mean={{_base_.fmnist_mean}},
    std={{_base_.fmnist_std}})
train_dataloader = {{_base_.fmnist_train_dataloader}}
val_dataloader = dict(
    _base_.fmnist_test_dataloader)  # a copy each: the merge pops _delete_
test_dataloader = dict(_base_.fmnist_test_dataloader)

# one process with batch 128 and the recipe's lr at its global batch (5e-4 x 1024 /
# 256), not scaled down with the batch: the schedule is 650x shorter than the
# recipe's (the pretraining study's rule, docs/fashion_mnist_study.md; with 5e-4 x
# 128 / 256 from scratch: 26.5 % top-1, docs/transfer_study.md)
batch_size = 128
optim_wrapper = dict(optimizer=dict(lr=5e-4 * 1024 / 256))
# 5 epochs (195 updates; the recipe: 100 epochs), warm-up 1 epoch (the recipe's 5 %,
# rounded up to a whole epoch), then cosine to 1e-6
max_epochs, warmup_epochs = 5, 1
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
