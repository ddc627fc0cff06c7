# ConMIM ViT-B/16, 800 epochs on ImageNet-1K. Reported: 83.7 top-1 after fine-tuning
# (ConMIM paper, arXiv 2205.09616). As the 300-epoch config (batch, lr and warm-up
# EXTRAPOLATED
# from the released ViT-L command), 800 epochs.
_base_ = ['./conmim_vit-base-p16_8xb256-amp-coslr-300e_in1k.py']

max_epochs = 800
# the schedule's warm-up (10 epochs, released ViT-L command), then cosine to epoch 800
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], end=max_epochs)
]
train_cfg = dict(max_epochs=max_epochs)
