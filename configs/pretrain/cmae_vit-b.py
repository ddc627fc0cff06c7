# The documented entry point of CMAE pretraining:
#   bash tools/dist_train.sh configs/pretrain/cmae_vit-b.py 8
# It is cmae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py (CMAE ViT-B/16, 1600 epochs,
# the released recipe), under a short name.
_base_ = './cmae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'
