# CMAE ViT-B/16 with the paper text's masking: "follow MAE" (CMAE paper, arXiv
# 2207.13532), i.e.
# 75 % of single patches (mask_unit_size=1) -> int(196 * 0.25) = 49 visible patches.
# Everything else as the 1600-epoch recipe. The released code masks 65 % of 2x2-patch
# units (cmae/models/backbones/cmae_vit.py).
_base_ = './cmae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

model = dict(backbone=dict(mask_ratio=0.75, mask_unit_size=1))
