# CMAE pretraining schedule (released ViT-B configs, configs/pre-training/cmae/):
# AdamW, lr 1.5e-4 x batch / 256 at global batch 4096, betas (0.9, 0.95), wd 0.05
# (none on LayerNorms, biases, pos_embed, mask_token, cls_token), mixed precision,
# 40 warm-up epochs (linear from 1e-4 x lr), then cosine to the end; 1600 epochs.
# Mixed precision (cmae_mm/engine/optimizers/mixed_precision_optim_wrapper.py): the
# release's float16 with dynamic loss scaling on GPUs (dtype='auto',
# loss_scale='dynamic' by default), bfloat16 on CPUs; float32: tools/train.py
# --precision fp32 (or optim_wrapper.type=OptimWrapper).
optim_wrapper = dict(
    type='MixedPrecisionOptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1.5e-4 * 4096 / 256, betas=(0.9, 0.95), weight_decay=0.05),
    # the release's custom keys (no 'bn' key: the projector and predictor BatchNorm
    # weights are decayed, as released)
    paramwise_cfg=dict(
        custom_keys={
            'ln': dict(decay_mult=0.0),  # LayerNorms (ln1, ln2, decoder ln1)
            'bias': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.),
            'mask_token': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }))

max_epochs = 1600
warmup_epochs = 40
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)

# The recipe's global batch is 4096 (8 GPUs x 512; released: 32 GPUs x 128). Opt-in as
# in OpenMMLab: with another world size / per-GPU batch pass --auto-scale-lr and the
# Runner multiplies lr by (GPUs x batch) / 4096.
auto_scale_lr = dict(base_batch_size=4096, enable=False)
