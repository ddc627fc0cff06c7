# ADE20K at 512x512: MMSegmentation 1.2.2's configs/_base_/datasets/ade20k.py,
# inherited (data_root/{images,annotations}/{training,validation}, JPEG images, PNG
# labels 0..150 with 0 = "other" -> reduce_zero_label maps it to 255, ignored).
_base_ = 'mmseg::_base_/datasets/ade20k.py'

# 8 GPUs x 2 = 16 (docs/recipes.md batch; MMSegmentation's configs/mae/
# mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py: "8 GPUs with 2 images per GPU").
train_dataloader = dict(batch_size=2)
