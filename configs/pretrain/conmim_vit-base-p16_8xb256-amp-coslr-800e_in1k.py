# ConMIM ViT-B/16, 800 epochs on ImageNet-1K. Reported: 83.7 top-1 after fine-tuning
# (ConMIM paper, arXiv 2205.09616). As the 300-epoch config (batch, lr and warm-up
# EXTRAPOLATED
# from the released ViT-L command), 800 epochs.
_base_ = ['./conmim_vit-base-p16_8xb256-amp-coslr-300e_in1k.py']

max_epochs = 800
warmup_epochs = 10  # released ViT-L command: --warmup_epochs 10
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
