# CMAE ViT-S/16 (384-d, 12 layers, 6 heads: MMPretrain's 'deit-small' arch), 1600
# epochs.
# EXTRAPOLATED from the ViT-B recipe (no ViT-S CMAE config was released): decoders
# (512-d; 8 / 2 blocks), projector / predictor hidden 1536 and out 256, masking
# (65 % of 2x2 units), batch 4096, lr 1.5e-4 x batch / 256, 40 warm-up epochs and
# 1600 epochs are the ViT-B numbers; only the encoder width (384) changes.
_base_ = './cmae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

embed_dims = 384
model = dict(
    backbone=dict(arch='deit-small'),
    neck=dict(embed_dim=embed_dims),
    feature_decoder=dict(embed_dim=embed_dims),
    projector=dict(in_channels=embed_dims))
