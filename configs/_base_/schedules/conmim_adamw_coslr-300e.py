# ConMIM pretraining schedule, 300 epochs (github.com/TencentARC/ConMIM:
# run_conmim_pretraining.py, optim_factory.py, utils.py cosine_scheduler, and the ViT-L
# command of its README; docs/recipes.md).
# released: AdamW betas (0.9, 0.98), eps 1e-8, wd 0.05 (constant), clip_grad 1.0;
# no decay on 1-d parameters (norms, biases, q/v bias, layer scale) and on cls_token /
# pos_embed (optim_factory).
# released mixed precision (engine_for_pretraining.py): float16 autocast with a
# GradScaler loss scaler. MixedPrecisionOptimWrapper (dtype='auto',
# loss_scale='dynamic' by default) does that on GPUs and trains in bfloat16 on CPUs;
# float32: tools/train.py --precision fp32 (or optim_wrapper.type=OptimWrapper).
lr = 7.5e-4  # ViT-L command (batch 2048); ViT-S/B: extrapolated from it
optim_wrapper = dict(
    type='MixedPrecisionOptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=1.0),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'q_bias': dict(decay_mult=0.0),
            'v_bias': dict(decay_mult=0.0),
            '.gamma': dict(decay_mult=0.0),
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }))

# released utils.cosine_scheduler: linear warmup from 0 (here 1e-4 x lr) over
# 10 epochs, then cosine to min_lr 1e-5, per iteration.
max_epochs = 300
warmup_epochs = 10
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
        eta_min=1e-5,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)

# lr above is for the global batch of 2048 (32 GPUs x 64 in the released command,
# 8 x 256 here). Opt-in as in OpenMMLab: with another number of GPUs or per-GPU batch
# pass --auto-scale-lr and the Runner scales the lr linearly.
auto_scale_lr = dict(base_batch_size=2048, enable=False)
