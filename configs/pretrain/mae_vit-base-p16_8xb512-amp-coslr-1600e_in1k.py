# MMPretrain's MAE ViT-B/16, 1600 epochs: the comparison baseline for CMAE, with the
# settings of MMPretrain 1.2.0's
# configs/mae/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py
# (the same optimizer, no-decay keys and schedule as CMAE's recipe, inherited).
# Its AmpOptimWrapper (float16, loss_scale='dynamic') is the schedule's
# MixedPrecisionOptimWrapper here: the same on GPUs, bfloat16 on CPUs.
# Reported (CMAE README): MAE ViT-B fine-tune 82.9 (300 ep), 83.6 (1600 ep).
_base_ = [
    '../_base_/models/mae_vit-base-p16.py',
    '../_base_/datasets/imagenet_mae.py',
    '../_base_/schedules/cmae_adamw_coslr-1600e.py',
    '../_base_/default_runtime.py',
]

# auto_scale_lr: the schedule's dict(base_batch_size=4096, enable=False), as
# MMPretrain's MAE config (pass --auto-scale-lr with another global batch)
