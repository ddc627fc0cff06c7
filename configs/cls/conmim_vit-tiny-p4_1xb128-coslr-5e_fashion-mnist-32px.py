# Fine-tuning a ConMIM encoder on Fashion-MNIST at 32 px (docs/transfer_study.md): the
# ConMIM fine-tuning recipe (conmim_vit-base-p16_8xb128-coslr-100e_in1k.py: BEiT-style
# encoder, layer decay 0.65, drop path 0.1, 20 % warm-up, Mixup / CutMix, label
# smoothing, RandAugment, random erasing, mean pooling, the momentum encoder) with the
# pretraining study's tiny ViT and the data of
# cmae_vit-tiny-p4_1xb128-coslr-5e_fashion-mnist-32px.py. Each change is what the scale
# requires:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    './conmim_vit-base-p16_8xb128-coslr-100e_in1k.py',
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

# one process with batch 128 and the recipe's lr at its global batch 1024, not
# scaled down with the batch: the schedule is 650x shorter than the recipe's (the
# rule of cmae_vit-tiny-p4_1xb128-coslr-5e_fashion-mnist-32px.py)
batch_size = 128
optim_wrapper = dict(optimizer=dict(lr=4e-3))
# 5 epochs (195 updates; the recipe: 100 epochs), warm-up 1 epoch (the recipe's
# 20 %), then cosine to 1e-6
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
