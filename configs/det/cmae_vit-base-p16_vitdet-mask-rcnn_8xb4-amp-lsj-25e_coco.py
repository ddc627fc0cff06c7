# The 100-epoch ViTDet recipe
# (cmae_vit-base-p16_vitdet-mask-rcnn_8xb4-amp-lsj-100e_coco.py) shortened to 25 epochs
# for quicker comparisons. EXTRAPOLATED, not a published schedule:
# iterations and lr steps are the 100-epoch ones divided by 4 (steps still at epochs
# 22 and 24 of 25, i.e. 88% and 96% as in the 100-epoch recipe); everything else
# unchanged.
#   bash tools/dist_train.sh \
#       configs/det/cmae_vit-base-p16_vitdet-mask-rcnn_8xb4-amp-lsj-25e_coco.py 8 \
#       --cfg-options \
#       model.backbone.init_cfg.checkpoint=work_dirs/cmae_vit-b/epoch_1600.pth
_base_ = ['./cmae_vit-base-p16_vitdet-mask-rcnn_8xb4-amp-lsj-100e_coco.py']

# In optimizer steps of 64 images; iterations = steps x accumulative_counts (2, as
# the 100-epoch config: 8 GPUs x 4 images x 2).
accumulative_counts = _base_.accumulative_counts
interval = _base_.interval
max_iters = 46094 * accumulative_counts  # 184375 / 4 steps
param_scheduler = [
    _base_.param_scheduler[0],  # the same 250 warm-up steps
    dict(
        _base_.param_scheduler[1],
        end=max_iters,
        # 163889 / 4, 177546 / 4 steps
        milestones=[40972 * accumulative_counts, 44387 * accumulative_counts])
]
train_cfg = dict(
    max_iters=max_iters,
    dynamic_intervals=[(max_iters // interval * interval + 1, max_iters)])
