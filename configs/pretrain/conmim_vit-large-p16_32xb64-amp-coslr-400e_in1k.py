# ConMIM ViT-L/16, 400 epochs on ImageNet-1K. Reported: 84.6 top-1 after fine-tuning
# (ConMIM paper, arXiv 2205.09616). The released ViT-L command (the 1600-epoch config)
# with 400 epochs (the schedule length is EXTRAPOLATED from the 1600-epoch command).
_base_ = './conmim_vit-large-p16_32xb64-amp-coslr-1600e_in1k.py'

max_epochs = 400
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], end=max_epochs)
]
train_cfg = dict(max_epochs=max_epochs)
