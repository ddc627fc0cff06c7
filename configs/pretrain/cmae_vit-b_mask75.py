# CMAE ViT-B/16 with the paper text's masking: "follow MAE", i.e. 75 % of single
# patches (mask_unit_size=1) -> int(196 * 0.25) = 49 visible patches. Everything else
# as cmae_vit-b.py (1600 epochs). The released code's default is 65 % of 2x2 units.
_base_ = './cmae_vit-b.py'
custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(backbone=dict(mask_ratio=0.75, mask_unit_size=1))
