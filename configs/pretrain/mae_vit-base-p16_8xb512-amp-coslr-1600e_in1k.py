# MMPretrain's MAE ViT-B/16, 1600 epochs: the comparison baseline for CMAE, with the
# settings of MMPretrain 1.2.0's
# configs/mae/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py
# (same optimizer and schedule as CMAE's recipe; no 'bn' key: MAE has no BatchNorm).
# Its AmpOptimWrapper (float16, loss_scale='dynamic') is the schedule's
# MixedPrecisionOptimWrapper here: the same on GPUs, bfloat16 on CPUs.
# Reported (CMAE README): MAE ViT-B fine-tune 82.9 (300 ep), 83.6 (1600 ep).
_base_ = [
    '../_base_/models/mae_vit-base-p16.py',
    '../_base_/datasets/imagenet_mae.py',
    '../_base_/schedules/cmae_adamw_coslr-1600e.py',
    '../_base_/default_runtime.py',
]

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
# enabled as in every cmae_mm pretraining recipe (MMPretrain leaves it to
# --auto-scale-lr)
auto_scale_lr = dict(base_batch_size=4096, enable=True)
