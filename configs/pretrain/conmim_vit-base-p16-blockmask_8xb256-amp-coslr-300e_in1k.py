# ConMIM ViT-B/16, 300 epochs, with BEiT block-wise masking of 75 patches (the released
# code's default --mask_type block, masking_generator.py) instead of the released
# command's 32-px random masking at 0.75. Everything else as the 300-epoch config.
_base_ = ['./conmim_vit-base-p16_8xb256-amp-coslr-300e_in1k.py']

train_pipeline = {{_base_.blockmask_train_pipeline}}
cpu_train_pipeline = {{_base_.blockmask_cpu_train_pipeline}}  # --augment-on cpu
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
