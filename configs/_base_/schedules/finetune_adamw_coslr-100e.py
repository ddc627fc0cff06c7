# End-to-end ImageNet fine-tuning schedule of the CMAE and ConMIM recipes
# (docs/recipes.md; as MMPretrain's configs/mae/benchmarks/
# vit-base-p16_8xb128-coslr-100e_in1k.py and configs/beit/benchmarks/
# beit-base-p16_8xb128-coslr-100e_in1k.py): AdamW betas (0.9, 0.999), eps 1e-8, wd
# 0.05, layer-wise lr decay 0.65, no weight decay on norms, biases and cls_token (the
# recipe configs set the lr and add their own no-decay keys); 100 epochs: linear
# warm-up from 1e-4 x lr over `warmup_epochs`, then cosine to 1e-6.
# Mixed precision as the releases' fine-tuning (CMAE: configs/fine-tuning/cmae/
# cmae_base_pre{300,1600}_8x128_100e_in1k_amp.py, AmpOptimWrapper with
# loss_scale='dynamic'; ConMIM: engine_for_finetuning.py, torch.cuda.amp.autocast()
# with a GradScaler): MixedPrecisionOptimWrapper with its defaults dtype='auto',
# loss_scale='dynamic' (float16 + dynamic loss scaling on GPUs, bfloat16 on CPUs);
# float32: tools/train.py --precision fp32.
optim_wrapper = dict(
    type='MixedPrecisionOptimWrapper',
    optimizer=dict(type='AdamW', weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        custom_keys={
            '.ln': dict(decay_mult=0.0),
            '.bias': dict(decay_mult=0.0),
            '.cls_token': dict(decay_mult=0.0),
        }),
)

max_epochs = 100
warmup_epochs = 5  # CMAE (docs/recipes.md); ConMIM's config sets 20
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
        eta_min=1e-6,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# The recipes' global batch, 8 GPUs x 128 = 1024. Opt-in as in OpenMMLab: with
# another number of GPUs or per-GPU batch pass --auto-scale-lr (linear scaling rule).
auto_scale_lr = dict(base_batch_size=1024, enable=False)
