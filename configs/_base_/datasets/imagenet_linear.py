# ImageNet-1K data for the MAE linear-probing protocol (He et al., MAE, arXiv
# 2111.06377, Appendix A.2: the field's standard; MAE's linprobe: RandomResizedCrop +
# flip only, test short side 256 + centre crop 224): the fine-tuning data
# (imagenet_finetune.py: layout, test pipeline, evaluators) without its augmentations.
_base_ = './imagenet_finetune.py'

# no Mixup / CutMix
data_preprocessor = dict(batch_augments=None)
# crop + flip only: the fine-tuning pipeline without RandAugment and RandomErasing
train_pipeline = [
    t for t in _base_.train_pipeline
    if t['type'] not in ('RandAugment', 'RandomErasing')
]
# 8 GPUs x 2048 = 16384 (MAE linear probing: LARS lr 6.4 at batch 16384).
train_dataloader = dict(
    batch_size=2048, drop_last=True, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=256)
test_dataloader = val_dataloader
